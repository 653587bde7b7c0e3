"""Shared test settings: deterministic, single-threaded torch (CI has 2 cores), and the shared data path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/models_for_tests.py

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> None:
    """Every test starts seeded and on one torch thread (the CLI's --threads sets the process-wide count)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(params=["fused", "torch"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The single-pass compiled kernels (numba) on, or off (NNCHIP_FUSED=0: chains of torch operations)."""
    from nnchip.core import compiled

    if request.param == "torch":
        monkeypatch.setenv("NNCHIP_FUSED", "0")
    compiled.refresh()
    if request.param == "fused" and not compiled.available():
        pytest.skip("numba is not installed: the fused kernels are off")
    yield request.param
    monkeypatch.undo()
    compiled.refresh()
