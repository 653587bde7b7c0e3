"""Interpreter handlers of the LUT-layer nodes `vq_encode` and `lut_gemm` (docs/vq.md), in int64.

Written independently of `nnchip.vq` (which the deploy forward uses): the nearest centroid is found by a
running minimum over k with a strict comparison — so the lowest index wins a tie — and the table rows are
gathered by integer indexing and summed in int64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nnchip.lower.intgraph import IntNode


def _distance(diff: Tensor, metric: str) -> Tensor:
    """diff (..., v) int64 -> (...) integer distance."""
    if metric == "l2":
        return (diff * diff).sum(dim=-1)
    if metric == "l1":
        return diff.abs().sum(dim=-1)
    if metric == "chebyshev":
        return diff.abs().amax(dim=-1)
    raise ValueError(f"unknown vq metric {metric!r}")


def _im2col(x: Tensor, attrs: dict) -> Tensor:
    """(B, C_in, H, W) int64 -> (B, OH, OW, C_in·k_h·k_w), channel-major, padded with `pad_value`."""
    ph, pw = attrs["padding"]
    padded = F.pad(x, (pw, pw, ph, ph), value=int(attrs["pad_value"]))
    kh, kw = attrs["kernel"]
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    windows = padded.unfold(2, span_h, sh).unfold(3, span_w, sw)[..., ::dh, ::dw]  # (B, C, OH, OW, kh, kw)
    b, c, oh, ow = windows.shape[:4]
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(b, oh, ow, c * kh * kw)


def run_vq_encode(node: IntNode, x: Tensor) -> Tensor:
    codebook = torch.from_numpy(node.params["codebook"]).to(torch.int64)  # (C, K, v)
    rows = _im2col(x, node.attrs) if node.attrs["layer"] == "conv2d" else x
    c, k, v = codebook.shape
    groups = rows.reshape(*rows.shape[:-1], c, v)  # (..., C, v)
    best = _distance(groups - codebook[:, 0], node.attrs["metric"])  # (..., C)
    index = torch.zeros_like(best)
    for j in range(1, k):
        dist = _distance(groups - codebook[:, j], node.attrs["metric"])
        closer = dist < best  # strict: an equal distance keeps the lower index
        best = torch.where(closer, dist, best)
        index = torch.where(closer, torch.full_like(index, j), index)
    return index


def lut_accumulate(node: IntNode, index: Tensor) -> Tensor:
    """acc (..., M) = Σ_c table[c, idx[..., c], :] + bias; conv layers return (B, M, OH, OW)."""
    table = torch.from_numpy(node.params["table"]).to(torch.int64)  # (C, K, M)
    acc = torch.from_numpy(node.params["bias"]).to(torch.int64).expand(*index.shape[:-1], table.shape[2]).clone()
    for c in range(table.shape[0]):
        acc += table[c][index[..., c]]
    return acc.permute(0, 3, 1, 2) if node.attrs["layer"] == "conv2d" else acc
