"""Sparse weight formats of the export (docs/export-format.md "Sparse weights"), pure numpy.

Every format works on the weight's im2col view W (C_out, K), K = C_in·kh·kw for OIHW conv weights (the
reduction order of the integer GEMM), K = C_in for linear weights:
    bitmask  1 bit per weight, C order over (C_out, K): 1 = non-zero
    nm       N:M: every group of m consecutive weights of a row holds at most n non-zeros; stored as
             values (C_out, K/m, n) and their in-group indices (C_out, K/m, n), each ceil(log2 m) bits, in
             increasing index order; a group with fewer than n non-zeros is padded with zero values at its
             lowest unused indices
    csr      compressed sparse rows: values (nnz,), column indices (nnz,), row pointers (C_out + 1,)
    nested   nested multi-level sparsity: the non-zeros of the densest level W_0 as (values, flat indices
             into the im2col view), ordered by the number of levels keeping them (descending: the sparsest
             level's weights first, weights of the densest level only last), then by index; counts[l] =
             non-zeros of level l, so the first counts[l] entries are exactly level l's weights
N:M is detected, not declared: the smallest m in NM_CANDIDATE_M dividing K for which the largest
non-zero count of a group, n, satisfies n/m ≤ 1/2.
"""

from __future__ import annotations

import math

import numpy as np

NM_CANDIDATE_M = (4, 8, 16)


def im2col_view(weight: np.ndarray) -> np.ndarray:
    """(C_out, K) view of an OIHW or (out, in) weight."""
    return weight.reshape(weight.shape[0], -1)


def density(weight: np.ndarray) -> float:
    """Fraction of non-zero weights."""
    return float(np.count_nonzero(weight)) / max(1, weight.size)


def bitmask(weight: np.ndarray) -> np.ndarray:
    """(C_out·K,) 0/1 codes, 1 = non-zero, C order over the im2col view."""
    return (im2col_view(weight) != 0).astype(np.int64).ravel()


def detect_nm(weight: np.ndarray) -> tuple[int, int] | None:
    """(n, m) of the N:M pattern the weight satisfies (see the module docstring), or None."""
    rows = im2col_view(weight)
    for m in NM_CANDIDATE_M:
        if rows.shape[1] % m:
            continue
        n = int((rows.reshape(rows.shape[0], -1, m) != 0).sum(axis=-1).max())
        if 2 * n <= m:
            return max(n, 1), m
    return None


def nm_compress(weight: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices), both (C_out, K/m, n): the kept weights of each group and their in-group index."""
    groups = im2col_view(weight).reshape(weight.shape[0], -1, m)  # (C_out, G, m)
    nonzero = groups != 0
    if int(nonzero.sum(axis=-1).max()) > n:
        raise ValueError(f"weight is not {n}:{m} sparse")
    # non-zeros first (in index order), then the lowest zero positions as padding
    order = np.argsort(~nonzero, axis=-1, kind="stable")[..., :n]  # (C_out, G, n)
    indices = np.sort(order, axis=-1)
    values = np.take_along_axis(groups, indices, axis=-1)
    return values.astype(np.int64), indices.astype(np.int64)


def nm_decompress(values: np.ndarray, indices: np.ndarray, m: int, shape: tuple[int, ...]) -> np.ndarray:
    """The dense weight of `shape` from N:M values and indices."""
    groups = np.zeros((values.shape[0], values.shape[1], m), dtype=np.int64)
    np.put_along_axis(groups, indices, values, axis=-1)
    return groups.reshape(shape)


def index_bits(m: int) -> int:
    return max(1, math.ceil(math.log2(m)))


def csr(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values (nnz,), columns (nnz,), row_pointers (C_out + 1,)) of the im2col view."""
    rows = im2col_view(weight)
    row_index, columns = np.nonzero(rows)
    pointers = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_index, minlength=rows.shape[0]), out=pointers[1:])
    return rows[row_index, columns].astype(np.int64), columns.astype(np.int64), pointers


def nested_order(densest: np.ndarray, keep: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(values (nnz_0,), flat indices (nnz_0,), counts (levels,)) of the nested format (module docstring);
    `keep` (the weight's shape) holds the number of levels (0..levels) keeping each weight."""
    flat, kept = im2col_view(densest).ravel(), keep.ravel().astype(np.int64)
    nonzero = np.flatnonzero(flat)
    order = nonzero[np.argsort(-kept[nonzero], kind="stable")]
    counts = [int(np.count_nonzero(kept[nonzero] > level)) for level in range(levels)]
    return flat[order].astype(np.int64), order.astype(np.int64), counts


def nested_prefix(values: np.ndarray, indices: np.ndarray, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """The dense weight of `shape` from the first `count` nested entries."""
    out = np.zeros(int(np.prod(shape)), dtype=np.int64)
    out[indices[:count]] = values[:count]
    return out.reshape(shape)


def nested_index_bits(size: int) -> int:
    """Bits of a flat index into a weight of `size` elements."""
    return max(1, math.ceil(math.log2(max(size, 2))))
