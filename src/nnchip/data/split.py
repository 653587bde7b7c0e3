"""A train/test split of an image classification dataset, as normalised float tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nnchip.core.errors import DataError


@dataclass(frozen=True)
class Split:
    """train/test TensorDatasets of (images (N, C, H, W) float32 normalised, labels (N,) int64)."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()


def split_from_uint8(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     classes: tuple[str, ...] = ()) -> Split:
    """Normalise uint8 images (N, H, W, C) or (N, C, H, W)-ready arrays with the train set's channel statistics."""
    if len(x_train) == 0 or len(x_test) == 0:
        raise DataError(f"{name}: empty train or test split")
    train = torch.from_numpy(np.ascontiguousarray(x_train)).float().div_(255.0)
    test = torch.from_numpy(np.ascontiguousarray(x_test)).float().div_(255.0)
    if train.dim() == 3:  # (N, H, W) grey images
        train, test = train.unsqueeze(1), test.unsqueeze(1)
    elif train.shape[-1] in (1, 3) and train.shape[1] not in (1, 3):  # NHWC -> NCHW
        train, test = train.permute(0, 3, 1, 2).contiguous(), test.permute(0, 3, 1, 2).contiguous()
    mean = train.mean(dim=(0, 2, 3))
    std = train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    shape = (1, -1, 1, 1)
    train = (train - mean.view(shape)) / std.view(shape)
    test = (test - mean.view(shape)) / std.view(shape)
    labels = np.concatenate([y_train, y_test])
    return Split(
        name=name,
        train=TensorDataset(train, torch.from_numpy(np.asarray(y_train, dtype=np.int64))),
        test=TensorDataset(test, torch.from_numpy(np.asarray(y_test, dtype=np.int64))),
        num_classes=int(labels.max()) + 1,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        classes=classes,
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified (train_idx, test_idx) for a given seed."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        cut = max(1, int(round(len(idx) * test_fraction)))
        test_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
