"""Fold BatchNorm into the conv/linear that feeds it (eval statistics), on a captured graph.

    W'[c] = W[c] · γ[c] / sqrt(σ²[c] + ε)        b'[c] = (b[c] − μ[c]) · γ[c] / sqrt(σ²[c] + ε) + β[c]

Quantization then sees exactly the weights the integer model uses, so QAT after folding trains the
deployed weights ("folded" BatchNorm; running statistics stop updating — documented in docs/quantization.md).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from nnchip.core.mask import raw_weight


def fold_batchnorm(gm: fx.GraphModule) -> int:
    """Fold every BatchNorm whose only input is a conv2d/linear with no other user; returns how many."""
    folded = 0
    for node in list(gm.graph.nodes):
        if node.meta.get("nnchip_kind") != "batchnorm":
            continue
        producer = node.args[0]
        if not isinstance(producer, fx.Node) or producer.meta.get("nnchip_kind") not in ("conv2d", "linear"):
            continue
        if len(producer.users) != 1 or producer.op != "call_module":
            continue
        layer = gm.get_submodule(str(producer.target))
        bn = gm.get_submodule(str(node.target))
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
            continue
        _fold_into(layer, bn)
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return folded


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    factor = gamma * inv_std  # (C,)
    weight = raw_weight(layer)  # (C, ...); a pruning mask applies after the fold, so zeros stay zero
    weight.mul_(factor.reshape(-1, *([1] * (weight.dim() - 1))))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * factor + beta
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.data.copy_(new_bias)
