"""MNIST IDX files (optionally gzipped): images `idx3-ubyte` (magic 2051), labels `idx1-ubyte` (magic 2049)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from nnchip.core.errors import DataError
from nnchip.data.split import Split, split_from_uint8, stratified_split


def read_idx(file: Path) -> np.ndarray:
    """An IDX array (big-endian header: magic, then one uint32 per dimension)."""
    try:
        raw = gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{file}: cannot read ({exc})") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{file}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DataError(f"{file}: {len(raw) - offset} data bytes, header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(tuple(dims))


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).exists():
            return directory / name
    return None


def load_mnist_idx(path: str | Path, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """A directory with MNIST IDX files: train-* and t10k-* if both exist, else a stratified split of one."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"data path not found or not a directory: {directory}")
    pairs = {}
    for prefix in ("train", "t10k"):
        images = _find(directory, f"{prefix}-images-idx3-ubyte")
        labels = _find(directory, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            x, y = read_idx(images), read_idx(labels).astype(np.int64)
            if len(x) != len(y):
                raise DataError(f"{images} and {labels}: {len(x)} images but {len(y)} labels")
            pairs[prefix] = (x, y)
    if not pairs:
        raise DataError(f"{directory}: no MNIST IDX image/label pair found")
    if len(pairs) == 2:
        return split_from_uint8("mnist", *pairs["train"], *pairs["t10k"])
    x, y = next(iter(pairs.values()))
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    return split_from_uint8("mnist", x[train_idx], y[train_idx], x[test_idx], y[test_idx])
