"""The block grid of a GEMM weight: its im2col view (C_out, K) cut into blocks of (r, c).

    K = C_in/groups · kh · kw (conv) or C_in (linear)
    block (i, j) = W[i·r:(i+1)·r, j·c:(j+1)·c],   grid (C_out/r, K/c)
r must divide C_out (and C_out/groups, so no block straddles two groups of a grouped conv), c must divide K.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.core.errors import ConfigError


def check_block_shape(path: str, layer: nn.Module, shape: tuple[int, int]) -> tuple[int, int]:
    """The block grid (C_out/r, K/c) of `layer`, or a ConfigError naming the layer when (r, c) does not divide."""
    rows, cols = shape
    weight = layer.weight
    out_channels, reduction = weight.shape[0], weight[0].numel()
    per_group = out_channels // int(getattr(layer, "groups", 1))
    if per_group % rows or reduction % cols:
        raise ConfigError(f"prune.block_shape: {rows}x{cols} does not divide the {out_channels}x{reduction} "
                          f"(C_out x K) view of layer {path} ({type(layer).__name__}); exclude it (prune.exclude) "
                          "or choose another block shape")
    return out_channels // rows, reduction // cols


def block_sum(values: Tensor, shape: tuple[int, int]) -> Tensor:
    """Σ over each block of a weight-shaped tensor: (C_out, ...) → (C_out/r, K/c)."""
    rows, cols = shape
    view = values.reshape(values.shape[0], -1)  # (C_out, K)
    return view.reshape(view.shape[0] // rows, rows, view.shape[1] // cols, cols).sum(dim=(1, 3))


def expand_block_mask(block_mask: Tensor, shape: tuple[int, int], weight_shape: torch.Size) -> Tensor:
    """A (C_out/r, K/c) 0/1 block mask as a 0/1 mask of the weight's shape."""
    rows, cols = shape
    full = block_mask.repeat_interleave(rows, dim=0).repeat_interleave(cols, dim=1)  # (C_out, K)
    return full.reshape(weight_shape)
