"""Nested multi-level sparsity in the IntGraph (nnchip.core.nested_mask, docs/pruning.md "Nested sparsity").

A conv/linear with a NestedMask is lowered at the model's active level l: `weight` holds W_l as for any
layer. Two more integer parameters and two attributes describe every level, so that the export can write
the nested format without the float model:

    params["weight_nested"]   W_0, the integer weights of the densest level          (weight's shape)
    params["weight_keep"]     keep ∈ {0..L}: weight i is kept at level j ⇔ keep_i > j  (weight's shape)
    attrs["sparsity_levels"]  [s_0, …, s_{L−1}];  attrs["sparsity_level"] = l
The lowering checks the contract the nested format relies on: for every level j the weight quantizer gives
exactly W_j = W_0 ⊙ [keep > j] (one scale for all levels), else a ConversionError names the layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nnchip.core.errors import ConversionError
from nnchip.core.nested_mask import nested_mask


def nested_weight_params(layer: nn.Module, quantizer: Any, where: str) -> tuple[dict[str, np.ndarray],
                                                                                  dict[str, Any]] | None:
    """(params, attrs) above for a nested layer, None for any other layer."""
    mask = nested_mask(layer)
    if mask is None:
        return None
    active, keep = mask.level, mask.keep.to(torch.int64)
    per_level: list[Tensor] = []
    try:
        for level in range(len(mask.levels)):
            mask.level = level
            per_level.append(quantizer.int_values(layer.weight.detach()).to(torch.int64))  # (C_out, ...)
    finally:
        mask.level = active
    densest = per_level[0]
    for level, weight in enumerate(per_level):
        if not torch.equal(weight, densest * (keep > level)):
            raise ConversionError(f"{where}: the integer weights of sparsity level {level} are not level 0's "
                                  "restricted to its mask (the weight quantizer's scale depends on the level); "
                                  "nested sparsity needs a weight quantizer with a stored scale (e.g. lsq)")
    params = {"weight_nested": densest.numpy(), "weight_keep": keep.numpy()}
    return params, {"sparsity_levels": list(mask.levels), "sparsity_level": active}
