"""ImageFolder readers: a directory or a .tar.gz of `train/<class>/*.jpg` and `test/<class>/*.jpg`.

Without train/ and test/ sub-directories, `<class>/*` images are split deterministically (stratified).
Images are decoded once with Pillow and cached as uint8 arrays (see cache.py).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from nnchip.core.errors import DataError
from nnchip.data.cache import load_cached, save_cached, source_key
from nnchip.data.split import Split, split_from_uint8, stratified_split

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot decode image {where}: {exc}") from None


def _members(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                yield PurePosixPath(file.relative_to(path).as_posix()), file.read_bytes()
        return
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and PurePosixPath(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield PurePosixPath(member.name), handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc})") from None


def _read(path: Path) -> dict[str, np.ndarray]:
    records: list[tuple[str, str, np.ndarray]] = []  # (split, class, image)
    for name, data in _members(path):
        parts = [p for p in name.parts if p not in (".", "")]
        if len(parts) < 2:
            continue
        split = parts[-3].lower() if len(parts) >= 3 and parts[-3].lower() in ("train", "test", "val") else ""
        records.append((split, parts[-2], _decode(data, f"{name} in {path}")))
    if not records:
        raise DataError(f"{path}: no images found in an ImageFolder layout (<split>/<class>/<image>)")
    shapes = {r[2].shape for r in records}
    if len(shapes) != 1:
        raise DataError(f"{path}: images have different sizes {sorted(shapes)[:3]}; resize them first")
    classes = sorted({r[1] for r in records})
    index = {c: i for i, c in enumerate(classes)}
    return {
        "images": np.stack([r[2] for r in records]),
        "labels": np.array([index[r[1]] for r in records], dtype=np.int64),
        "splits": np.array([{"train": 0, "test": 1, "val": 1}.get(r[0], -1) for r in records], dtype=np.int8),
        "classes": np.array(classes),
    }


def load_imagefolder(path: str | Path, seed: int = 0, test_fraction: float = 0.2,
                     cache: str | Path | None = None) -> Split:
    """Read an ImageFolder directory or archive into a normalised Split (decoded arrays are cached)."""
    source = Path(path)
    if not source.exists():
        raise DataError(f"data path not found: {source}")
    key = source_key(source, "imagefolder-v1")
    arrays = load_cached(key, cache)
    if arrays is None:
        arrays = _read(source)
        save_cached(key, arrays, cache)
    images, labels, splits = arrays["images"], arrays["labels"], arrays["splits"]
    if (splits >= 0).all() and (splits == 0).any() and (splits == 1).any():
        train_idx, test_idx = np.flatnonzero(splits == 0), np.flatnonzero(splits == 1)
    else:
        train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return split_from_uint8(source.name, images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                            tuple(str(c) for c in arrays["classes"]))


load_cifar10_tar = load_imagefolder
