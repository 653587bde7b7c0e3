"""Decoded-array cache outside the repository (default ~/.cache/nnchip, or $NNCHIP_CACHE)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from nnchip.core.errors import DataError


def cache_dir(override: str | Path | None = None) -> Path:
    root = Path(override or os.environ.get("NNCHIP_CACHE") or Path.home() / ".cache" / "nnchip")
    root.mkdir(parents=True, exist_ok=True)
    return root


def source_key(path: Path, kind: str) -> str:
    """A cache key from the source's kind, resolved path, size and modification time (cheap, stable)."""
    stat = path.stat()
    text = f"{kind}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_cached(key: str, override: str | Path | None = None) -> dict[str, np.ndarray] | None:
    file = cache_dir(override) / f"{key}.npz"
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError):
        file.unlink(missing_ok=True)  # a corrupt cache entry is rebuilt, never trusted
        return None


def save_cached(key: str, arrays: dict[str, np.ndarray], override: str | Path | None = None) -> None:
    directory = cache_dir(override)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, directory / f"{key}.npz")
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"cannot write the data cache in {directory}: {exc}") from None
