"""Checkpoints: model weights in safetensors, optimizer state loaded with weights_only=True, JSON progress.

A checkpoint is a directory `step-<N>/` (model.safetensors, optimizer.pt, state.json) written atomically
(temporary directory, then rename). Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nnchip.core.errors import DataError


def save_weights(model: nn.Module, file: str | Path) -> None:
    """Model state (parameters and buffers) to a safetensors file, atomically."""
    target = Path(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_weights(model: nn.Module, file: str | Path, *, strict: bool = True) -> nn.Module:
    """Load a safetensors file, or a `weights_only` torch file (.pt/.pth), into `model`."""
    source = Path(file)
    if not source.is_file():
        raise DataError(f"checkpoint not found: {source}")
    try:
        if source.suffix == ".safetensors":
            state = load_file(str(source))
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
    except (SafetensorError, RuntimeError, OSError, ValueError, EOFError, Exception) as exc:
        raise DataError(f"corrupt or unreadable checkpoint {source}: {type(exc).__name__}") from None
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {source} does not hold a state dict")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else str(exc)
        raise DataError(f"checkpoint {source} does not fit the model: {detail}") from None
    return model


def save_checkpoint(directory: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> Path:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        save_weights(model, tmp / "model.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
        final = root / f"step-{step:08d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def latest_checkpoint(directory: str | Path) -> Path | None:
    root = Path(directory)
    found = sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    load_weights(model, path / "model.safetensors")
    try:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
        return json.loads((path / "state.json").read_text())
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise DataError(f"corrupt checkpoint {path}: {type(exc).__name__}") from None
