"""LUTLayer: a Linear or Conv2d computed as nearest-centroid search plus a sum of table rows.

Rows x (N, D) (conv: im2col, channel-major (c, i, j)) are split into C = D / v sub-vectors; codebook c holds
K centroids P[c] (K, v); T[c] = P[c] · W[:, c·v:(c+1)·v]ᵀ (K, M). The forward pass:
    idx[n, c] = argmin_k dist(x[n, c], P[c, k])           (ties: lowest k)
    y[n]      = Σ_c T[c, idx[n, c]] + b  =  x̂[n] · Wᵀ + b,   x̂ = the nearest centroids, concatenated
Training modes (`mode`, in train mode only; eval always runs the hard forward):
    "reconstruct"  value Σ_c T[c, idx] + b, gradient of x·Wᵀ + b (straight-through); stores `lut_loss` =
                   ‖x̂·Wᵀ − sg(x·Wᵀ)‖² / ‖x·Wᵀ‖², the centroids' training signal (LUT-DLA's formulation; stage 2
                   freezes W and b, the "ste" joint stages train everything on the task loss + β·lut_loss)
    "joint"        value of the hard assignment, gradient of the soft one: a = softmax_k(−dist / τ),
                   x̃ = Σ_k a_k P_k, y = x̃·Wᵀ + b + sg(hard − soft); τ = exp(log_tau) is learned
With `quantize_tables` the forward value is the integer-table result Σ_c s_T·T_int[c, idx] + b
(straight-through: gradients as without table quantization).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnchip.vq.integer import (
    float_tables,
    im2col_rows,
    integer_bias,
    integer_tables,
    quantize_tables,
    table_scales,
)
from nnchip.vq.metrics import METRICS, nearest_index

MODES = ("hard", "reconstruct", "joint")


class LUTLayer(nn.Module):
    """A LUT version of `layer` (nn.Linear or nn.Conv2d with groups = 1); a graph leaf of kind "vq_lut"."""

    nnchip_leaf = True
    nnchip_kind = "vq_lut"

    def __init__(self, layer: nn.Linear | nn.Conv2d, *, v: int, k: int, metric: str, table_bits: int = 8,
                 table_granularity: str = "channel") -> None:
        super().__init__()
        self.is_conv = isinstance(layer, nn.Conv2d)
        weight = layer.weight.detach().clone()
        self.out_features = weight.shape[0]
        self.in_features = int(math.prod(weight.shape[1:]))  # D
        if self.is_conv:
            conv: nn.Conv2d = layer  # type: ignore[assignment]
            self.kernel_size = tuple(conv.kernel_size)
            self.stride = tuple(conv.stride)
            self.padding = tuple(conv.padding)  # type: ignore[arg-type]
            self.dilation = tuple(conv.dilation)
        self.weight = nn.Parameter(weight)  # (M, D) or (M, C_in, k_h, k_w)
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None
        self.v, self.k, self.metric = v, k, metric
        self.table_bits, self.table_granularity = table_bits, table_granularity
        self.codebooks = nn.Parameter(torch.zeros(self.in_features // v, k, v))  # (C, K, v)
        self.log_tau = nn.Parameter(torch.zeros(()))
        self.register_buffer("grid_scale", torch.zeros(()))  # > 0 once snapped: the input grid's scale
        self.mode = "hard"
        self.quantize_tables = False
        self.lut_loss: Tensor | None = None

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    def extra_repr(self) -> str:
        kind = "conv2d" if self.is_conv else "linear"
        return (f"{kind}, D={self.in_features}, M={self.out_features}, v={self.v}, K={self.k}, metric={self.metric}, "
                f"table_bits={self.table_bits}")

    # ---- views ---------------------------------------------------------------------------------------
    def rows(self, x: Tensor) -> Tensor:
        """Input -> rows (N, D): linear (..., D); conv (B, C_in, H, W) -> im2col (B·OH·OW, D)."""
        if not self.is_conv:
            return x.reshape(-1, self.in_features)
        cols = im2col_rows(x, self.kernel_size, self.stride, self.padding, self.dilation)  # (B, OH, OW, D)
        return cols.reshape(-1, self.in_features)

    def unrows(self, y: Tensor, x: Tensor) -> Tensor:
        """Rows (N, M) -> output shape: linear (..., M); conv (B, M, OH, OW)."""
        if not self.is_conv:
            return y.reshape(*x.shape[:-1], self.out_features)
        b, _, h, w = x.shape
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        return y.reshape(b, oh, ow, self.out_features).permute(0, 3, 1, 2)

    def groups(self, rows: Tensor, *, contiguous: bool = True) -> Tensor:
        """Rows (N, D) -> sub-vectors (C, N, v) (a strided view unless `contiguous`)."""
        groups = rows.reshape(rows.shape[0], self.num_codebooks, self.v).transpose(0, 1)
        return groups.contiguous() if contiguous else groups

    def flat_weight(self) -> Tensor:
        return self.weight.reshape(self.out_features, self.in_features)  # (M, D)

    def tables(self) -> Tensor:
        """Float tables (C, K, M), built from the current centroids and weights (differentiable)."""
        return float_tables(self.flat_weight(), self.codebooks)

    def dequantized_tables(self) -> Tensor:
        """s_T · T_int (C, K, M): the values the integer tables stand for."""
        tables = self.tables()
        scales = table_scales(tables, self.table_bits, self.table_granularity)
        return quantize_tables(tables, scales, self.table_bits) * scales

    # ---- forward -------------------------------------------------------------------------------------
    def encode(self, groups: Tensor) -> tuple[Tensor | None, Tensor]:
        """Sub-vectors (C, N, v) -> (distances (C, N, K), nearest indices (C, N)).

        Without gradient the float search is the metric's `search` (same nearest centroid) and returns no
        distances.

        In eval mode after `snap_codebooks` (grid_scale > 0) inputs and centroids are on the input grid and the
        search runs on their integer offsets, exactly as the integer model does (ties -> the lowest index)."""
        metric = METRICS.get(self.metric)
        if not self.training and float(self.grid_scale) > 0:
            scale = self.grid_scale.to(groups.dtype)
            distances = metric.int_distance(torch.round(groups / scale), torch.round(self.codebooks / scale))
        elif torch.is_grad_enabled():
            distances = metric.distance(groups, self.codebooks)
        else:
            return None, metric.search(groups, self.codebooks)
        return distances, nearest_index(distances)

    def flat_index(self, index: Tensor) -> Tensor:
        """Indices (C, N) -> (N, C) row numbers in the codebooks or tables flattened to (C·K, ...)."""
        return index.transpose(0, 1) + torch.arange(self.num_codebooks) * self.k

    def nearest(self, index: Tensor) -> Tensor:
        """Nearest centroids of indices (C, N), concatenated per row: x̂ (N, D); differentiable with respect to the
        codebooks (an index_select of the flattened codebooks: its backward is a row-wise index_add)."""
        flat = self.flat_index(index).reshape(-1)  # (N·C,)
        return torch.index_select(self.codebooks.reshape(-1, self.v), 0, flat).reshape(-1, self.in_features)

    def gather(self, tables: Tensor, index: Tensor) -> Tensor:
        """Σ_c tables[c, index[c, n]] (+ bias): tables (C, K, M), index (C, N) -> (N, M)."""
        total = F.embedding_bag(self.flat_index(index), tables.reshape(-1, self.out_features), mode="sum")
        return total if self.bias is None else total + self.bias

    def integer_gather(self, index: Tensor) -> Tensor:
        """Eval forward on the integer model's own tables: (Σ_c T_int[c, k_c] + round(b/s_T))·s_T with T_int, s_T and
        the bias from `integer_tables`/`integer_bias` (float64, as the lowering builds them) and the sum exact in
        float64 — so the fake-quant output is the integer accumulator at its scale, as for conv/linear layers."""
        tables, scales = integer_tables(self.flat_weight(), self.codebooks, self.table_bits, self.table_granularity)
        total = F.embedding_bag(self.flat_index(index), tables.reshape(-1, self.out_features).to(torch.float64),
                                mode="sum")
        total.add_(integer_bias(self.bias, scales).to(torch.float64))
        return total.mul_(scales).to(self.codebooks.dtype)  # (N, M)

    def exact_rows(self, x: Tensor) -> Tensor:
        """The exact layer x·Wᵀ + b as rows (N, M) (conv: the convolution itself, whose backward is cheaper than
        the im2col view's)."""
        if not self.is_conv:
            return F.linear(x.reshape(-1, self.in_features), self.flat_weight(), self.bias)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)  # (B, M, OH, OW)
        return y.permute(0, 2, 3, 1).reshape(-1, self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        mode = self.mode if self.training else "hard"
        soft = torch.is_grad_enabled() and mode == "joint"  # only the soft assignment needs gradients of the rows
        rows = self.rows(x if soft else x.detach())  # (N, D)
        n = rows.shape[0]
        with torch.set_grad_enabled(soft):
            distances, index = self.encode(self.groups(rows, contiguous=soft))  # (C, N, K) or None, (C, N)
        if mode == "hard" and not self.training and self.quantize_tables:
            return self.unrows(self.integer_gather(index), x)
        if mode == "hard":
            tables = self.dequantized_tables() if self.quantize_tables else self.tables()
            return self.unrows(self.gather(tables, index), x)
        with torch.no_grad():  # the forward value: the table look-up (integer tables when quantized)
            value = self.gather(self.dequantized_tables() if self.quantize_tables else self.tables(), index)
        weight = self.flat_weight()
        if mode == "reconstruct":
            x_hard = self.nearest(index)  # (N, D)
            exact = self.exact_rows(x)  # x·Wᵀ + b: its gradient is the straight-through path
            target = exact.detach()
            hard = F.linear(x_hard, weight.detach(), None if self.bias is None else self.bias.detach())
            self.lut_loss = (hard - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)
            path = exact
        else:
            assert distances is not None
            weights = torch.softmax(distances * -torch.exp(-self.log_tau), dim=-1)  # softmax_k(−d/τ) (C, N, K)
            x_soft = torch.bmm(weights, self.codebooks).transpose(0, 1).reshape(n, self.in_features)
            path = F.linear(x_soft, weight, self.bias)
        return self.unrows(path + (value - path).detach(), x)


def lut_layers(model: nn.Module) -> list[tuple[str, LUTLayer]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LUTLayer)]


def set_mode(model: nn.Module, mode: str, *, quantize_tables: bool | None = None) -> None:
    """Set every LUT layer's training mode (and, if given, table quantization)."""
    if mode not in MODES:
        raise ValueError(f"LUT mode must be one of {MODES}, got {mode!r}")
    for _, layer in lut_layers(model):
        layer.mode = mode
        if quantize_tables is not None:
            layer.quantize_tables = quantize_tables
