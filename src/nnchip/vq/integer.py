"""Integer parameters of a LUT layer and its integer forward on the quantized model's side (pure functions).

The integer contract of a LUT layer (docs/vq.md, docs/integer-semantics.md):
    codebook  P_int[c, k] = clip(round(P[c, k] / s_x) + z_x, qmin_x, qmax_x)   (on the input's grid)
    encode    idx[n, c]   = argmin_k dist_int(x_int[n, c·v:(c+1)·v], P_int[c, k]); ties -> lowest k
              (conv: x_int is the im2col view, channel-major (c, i, j), padded with z_x)
    tables    T[c, k, m]  = Σ_j P[c, k, j] · W[m, c·v + j]           (float, from the float centroids)
              s_T[m]      = max_{c,k} |T[c, k, m]| / (2^(b_T−1) − 1)    (or one scale for the whole tensor)
              T_int       = clip(round(T / s_T), −(2^(b_T−1) − 1), 2^(b_T−1) − 1)
    gather    acc[n, m]   = Σ_c T_int[c, idx[n, c], m] + round(b[m] / s_T[m])
    output    requantize(acc, s_T / s_out) onto the output grid (rounding half up, saturation)
`round` is half-to-even (torch.round). This file serves the deploy forward (`nnchip.quant.deploy`) and the
lowering; the interpreter and the numpy reader recompute encode/gather independently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nnchip.vq.metrics import METRICS, nearest_index


def integer_codebooks(codebooks: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    """Centroids (C, K, v) on the input's integer grid -> int64 (C, K, v)."""
    return torch.clamp(torch.round(codebooks.detach().double() / scale) + zero_point, qmin, qmax).to(torch.int64)


def float_tables(weight: Tensor, codebooks: Tensor) -> Tensor:
    """T[c, k, m] = P[c, k, :] · W[m, c·v:(c+1)·v]: weight (M, D), codebooks (C, K, v) -> (C, K, M)."""
    c, _, v = codebooks.shape
    return torch.einsum("ckj,mcj->ckm", codebooks, weight.reshape(weight.shape[0], c, v))


def table_scales(tables: Tensor, bits: int, granularity: str) -> Tensor:
    """Symmetric narrow scale per output channel (M,) — or one shared scale expanded to (M,) — of tables (C, K, M)."""
    qmax = 2 ** (bits - 1) - 1
    peak = tables.abs().amax(dim=(0, 1)) if granularity == "channel" else tables.abs().amax().expand(tables.shape[2])
    return torch.clamp(peak, min=1e-12) / qmax


def quantize_tables(tables: Tensor, scales: Tensor, bits: int) -> Tensor:
    """T_int = clip(round(T / s_T), ±(2^(b−1) − 1)) as an integer-valued tensor of the tables' dtype."""
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(tables / scales), -qmax, qmax)


def integer_tables(weight: Tensor, codebooks: Tensor, bits: int, granularity: str) -> tuple[Tensor, Tensor]:
    """(T_int int64 (C, K, M), s_T float64 (M,)) computed in float64."""
    tables = float_tables(weight.detach().double(), codebooks.detach().double())
    scales = table_scales(tables, bits, granularity)
    return quantize_tables(tables, scales, bits).to(torch.int64), scales


def integer_bias(bias: Tensor | None, scales: Tensor) -> Tensor:
    """Bias at the accumulator scale s_T: round(b / s_T) -> int64 (M,)."""
    if bias is None:
        return torch.zeros(scales.shape[0], dtype=torch.int64)
    return torch.round(bias.detach().double() / scales).to(torch.int64)


def im2col_rows(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
                dilation: tuple[int, ...], pad_value: float = 0.0) -> Tensor:
    """(B, C_in, H, W) -> (B, OH, OW, C_in·k_h·k_w), channel-major columns, borders padded with `pad_value`.

    Built from strided views (pad, Tensor.unfold, permute) and one copy; differentiable."""
    ph, pw = padding
    padded = F.pad(x, (pw, pw, ph, ph), value=pad_value) if ph or pw else x
    span_h, span_w = dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1
    windows = padded.unfold(2, span_h, stride[0]).unfold(3, span_w, stride[1])  # (B, C, OH, OW, span_h, span_w)
    windows = windows[..., :: dilation[0], :: dilation[1]]  # (B, C, OH, OW, k_h, k_w)
    b, c, oh, ow = windows.shape[:4]
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(b, oh, ow, c * kernel[0] * kernel[1])


def encode_int(rows: Tensor, codebook: Tensor, metric: str) -> Tensor:
    """Nearest-centroid indices: rows int (..., D), codebook int (C, K, v) -> int64 (..., C), ties to lowest k."""
    c, _, v = codebook.shape
    lead = rows.shape[:-1]
    groups = rows.reshape(-1, c, v).transpose(0, 1)  # (C, N, v)
    distances = METRICS.get(metric).int_distance(groups, codebook)  # (C, N, K)
    return nearest_index(distances).transpose(0, 1).reshape(*lead, c)


def gather_accumulate(indices: Tensor, tables: Tensor) -> Tensor:
    """acc[..., m] = Σ_c T[c, idx[..., c], m]: indices (..., C), tables int (C, K, M) -> int64 (..., M).

    Exact: float64 embedding-bag sums of integers below 2^53."""
    c, k, m = tables.shape
    lead = indices.shape[:-1]
    flat = indices.reshape(-1, c) + torch.arange(c) * k  # (N, C) rows of the (C·K, M) table
    total = F.embedding_bag(flat, tables.reshape(c * k, m).double(), mode="sum")  # (N, M)
    return torch.round(total).to(torch.int64).reshape(*lead, m)
