"""Data readers on files written here, and on the real shared data when present."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nnchip.core.errors import DataError
from nnchip.data import (
    load_cifar10_bin,
    load_digits_split,
    load_imagefolder,
    load_mnist_idx,
    random_crop_flip,
)


def test_digits_split_is_deterministic_and_stratified() -> None:
    a, b = load_digits_split(seed=0), load_digits_split(seed=0)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert len(a.train) + len(a.test) == 1797 and a.num_classes == 10
    assert torch.bincount(a.test.tensors[1]).min() >= 30
    assert not torch.equal(load_digits_split(seed=1).test.tensors[1], a.test.tensors[1])


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_imagefolder_tar_round_trip(tmp_path: Path) -> None:
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, count in (("train", 3), ("test", 2)):
            for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
                for i in range(count):
                    data = _png(color)
                    info = tarfile.TarInfo(f"{split}/{cls}/{i}.png")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    split = load_imagefolder(archive, cache=tmp_path / "cache")
    assert len(split.train) == 6 and len(split.test) == 4 and split.classes == ("cat", "dog")
    x, y = split.train.tensors
    assert x.shape == (6, 3, 4, 4)
    red_channel = x[:, 0].mean(dim=(1, 2))
    assert bool((red_channel[y == 0] > red_channel[y == 1]).all())  # cats are red
    again = load_imagefolder(archive, cache=tmp_path / "cache")  # from the cache
    assert torch.equal(again.train.tensors[0], x)


def test_cifar_binary_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("data_batch_1.bin", "test_batch.bin"):
        records = np.concatenate([rng.integers(0, 10, (5, 1)), rng.integers(0, 256, (5, 3072))], axis=1)
        records.astype(np.uint8).tofile(tmp_path / name)
    split = load_cifar10_bin(tmp_path)
    assert split.train.tensors[0].shape == (5, 3, 32, 32)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a multiple of the 3073-byte"):
        load_cifar10_bin(tmp_path)


def _idx(data: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, data.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    return header + data.astype(np.uint8).tobytes()


def test_mnist_idx_written_here(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28))
    labels = np.tile(np.arange(10), 4)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))
    split = load_mnist_idx(tmp_path)
    assert len(split.train) + len(split.test) == 40 and split.train.tensors[0].shape[1:] == (1, 28, 28)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels)[:-3])
    with pytest.raises(DataError, match="header says"):
        load_mnist_idx(tmp_path)


def test_real_mnist(shared_data: Path) -> None:
    split = load_mnist_idx(shared_data / "mnist")
    assert len(split.train) + len(split.test) == 10_000


def test_missing_and_corrupt_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data path not found"):
        load_imagefolder(tmp_path / "absent.tar.gz")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_imagefolder(bad, cache=tmp_path / "c")


def test_random_crop_flip_keeps_shape_and_content() -> None:
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    y = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1)) for i in range(2))
