"""Optional numba compilation shared by every single-pass kernel (`pip install nnchip[fast]`).

Kernels are compiled on first use per argument types, cached on disk, release the GIL and keep IEEE semantics
(no fast-math: no fused multiply-add contraction, no reassociation), so each one performs exactly the
floating-point operations of the torch chain it replaces. `NNCHIP_FUSED=0` in the environment turns every
kernel off; `refresh` re-reads it.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


@functools.lru_cache(maxsize=1)
def numba_module() -> Any:
    """The numba module, imported on first use (it takes most of a second), or None when it is not installed."""
    try:
        return importlib.import_module("numba")
    except ImportError:
        return None


_ENABLED: list[bool] = []  # [the setting read by the last `refresh`]


def refresh() -> None:
    """Re-read NNCHIP_FUSED."""
    _ENABLED[:] = [os.environ.get("NNCHIP_FUSED", "1") != "0" and numba_module() is not None]


def available() -> bool:
    """numba is installed and NNCHIP_FUSED is not 0 (as read by the last `refresh`)."""
    if not _ENABLED:
        refresh()
    return _ENABLED[0]


_COMPILED: dict[tuple[Callable[..., Any], frozenset[str]], Callable[..., Any]] = {}


def compiled(function: Callable[..., Any], *, reassociate: bool = False) -> Callable[..., Any]:
    """`function` compiled by numba (per argument types on first call, cached on disk), GIL released, IEEE
    semantics; `reassociate` lets the compiler reorder sums (vectorised reductions) — for kernels whose only
    multi-term expressions are accumulations that need not match another path's order."""
    flags = frozenset({"reassoc"} if reassociate else ())
    kernel = _COMPILED.get((function, flags))
    if kernel is None:
        kernel = numba_module().njit(cache=True, nogil=True, fastmath=set(flags) if flags else False)(function)
        _COMPILED[(function, flags)] = kernel
    return kernel


@functools.lru_cache(maxsize=1)
def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The pool on which kernels (which release the GIL) run the parts the calling thread does not take."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnchip-kernel")
