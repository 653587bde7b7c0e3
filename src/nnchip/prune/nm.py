"""N:M fine-grained structured sparsity, one-shot by magnitude or trained with SR-STE (algorithms.md §7.1).

Groups: every row of the (C_out, C_in·kh·kw) im2col view of a weight (a Linear's (C_out, C_in)) is split
into consecutive groups of M along the reduction axis — the order in which the integer GEMM reduces — and
the N largest |w| of each group are kept (ties: lower index). The row length must be a multiple of M.

SR-STE (training): the mask is recomputed from |w| at every forward; the forward uses w ⊙ mask, the
backward passes the gradient straight through to every w and adds λ_W · (1 − mask) ⊙ w (λ_W = 2e-4,
aojunzz/NM-sparsity), which decays the pruned weights so the mask settles.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from nnchip.core.errors import ConfigError
from nnchip.core.mask import raw_weight, remove_weight_parametrization, set_mask
from nnchip.prune.config import PruneConfig
from nnchip.prune.registry import prunable_layers, register_structure


def nm_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """0/1 mask keeping the n largest |w| of every m consecutive entries of each im2col row."""
    rows = weight.detach().reshape(weight.shape[0], -1)  # (C_out, K)
    groups = rows.abs().reshape(rows.shape[0], -1, m)  # (C_out, K/m, m)
    # stable descending order: equal magnitudes keep the lower index
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :n]  # (C_out, K/m, n)
    mask = torch.zeros_like(groups).scatter_(-1, order, 1.0)
    return mask.reshape(weight.shape)


def check_divisible(path: str, layer: nn.Module, m: int) -> None:
    reduction = layer.weight[0].numel()
    if reduction % m:
        raise ConfigError(f"prune.m: {m} does not divide the reduction length {reduction} of layer {path} "
                          f"({type(layer).__name__}); exclude it (prune.exclude) or choose another m")


class _SRSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weight: Tensor, mask: Tensor, decay: float) -> Tensor:
        ctx.save_for_backward(weight, mask)
        ctx.decay = decay
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        weight, mask = ctx.saved_tensors
        return grad + ctx.decay * (1.0 - mask) * weight, None, None


class NMSparseSRSTE(nn.Module):
    """Parametrization w ↦ w ⊙ nm_mask(w) with the SR-STE backward."""

    def __init__(self, n: int, m: int, decay: float) -> None:
        super().__init__()
        self.n, self.m, self.decay = n, m, decay

    def forward(self, weight: Tensor) -> Tensor:
        return _SRSTE.apply(weight, nm_mask(weight, self.n, self.m).to(weight.dtype), self.decay)

    def current_mask(self, weight: Tensor) -> Tensor:
        return nm_mask(weight, self.n, self.m)


@register_structure("nm")
@torch.no_grad()
def prune_nm(model: nn.Module, config: PruneConfig, sparsity: float,
             example_inputs: tuple[Tensor, ...] | None) -> nn.Module:
    del sparsity, example_inputs  # N:M removes 1 - n/m of every group, whatever the schedule says
    for path, layer in prunable_layers(model, config):
        check_divisible(path, layer, config.m)
        if config.sr_ste:
            weight = raw_weight(layer).detach().clone()
            if parametrize.is_parametrized(layer, "weight"):
                remove_weight_parametrization(layer, leave_parametrized=False)
            layer.weight.copy_(weight)
            parametrize.register_parametrization(layer, "weight", NMSparseSRSTE(config.n, config.m,
                                                                                config.sr_ste_decay))
        else:
            set_mask(layer, nm_mask(raw_weight(layer), config.n, config.m))
    return model
