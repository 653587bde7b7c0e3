"""The embedded default dataset: scikit-learn's bundled 8×8 digits (1,797 images, 10 classes)."""

from __future__ import annotations

import numpy as np

from nnchip.data.split import Split, split_from_uint8, stratified_split


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Deterministic stratified split of sklearn's digits; pixel values 0..16 scaled to 0..255 first."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return split_from_uint8("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                            tuple(str(i) for i in range(10)))
