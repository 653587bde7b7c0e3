"""CIFAR-10 binary batches: `data_batch_1..5.bin` and `test_batch.bin`, 3073-byte records
(1 label byte, then 1024 red, 1024 green, 1024 blue bytes, row-major 32×32). Never the pickled batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnchip.core.errors import DataError
from nnchip.data.split import Split, split_from_uint8

RECORD_BYTES = 3073
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(file, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(f"{file}: size {raw.size} is not a multiple of the {RECORD_BYTES}-byte CIFAR record")
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{file}: label {labels.max()} outside 0..9 — not a CIFAR-10 binary batch")
    images = records[:, 1:].reshape(-1, 3, 32, 32)  # (N, C, H, W)
    return images, labels


def load_cifar10_bin(path: str | Path, seed: int = 0) -> Split:
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"data path not found or not a directory: {directory}")
    train_files = sorted(directory.glob("data_batch_*.bin"))
    test_file = directory / "test_batch.bin"
    if not train_files or not test_file.exists():
        raise DataError(f"{directory}: expected data_batch_*.bin and test_batch.bin")
    parts = [read_cifar_batch(f) for f in train_files]
    x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_test, y_test = read_cifar_batch(test_file)
    return split_from_uint8("cifar10", x_train, y_train, x_test, y_test, CLASSES)
