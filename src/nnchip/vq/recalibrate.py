"""Re-estimation of each LUT layer's output statistics after conversion (the BatchNorm re-estimation of VQ).

The BatchNorms are folded into the converted layers, so a LUT layer's output no longer passes a normaliser:
the centroid error shifts each output channel's mean and shrinks its spread (k-means centroids are
conditional means), and the next layers see a distribution they were not trained on. This pass restores,
per output channel m, the float layer's mean μ_t and standard deviation σ_t, measured on the float model:

    mode "bias"     b'[m] = b[m] + μ_t[m] − μ[m]                                    (bias correction)
    mode "affine"   a[m]  = clip(σ_t[m] / σ[m], 1/a_max, a_max)
                    W'[m] = a[m] · W[m],   b'[m] = a[m] · b[m] + μ_t[m] − a[m] · μ[m]  (y' = a·(y − μ) + μ_t)

μ, σ: the LUT layer's output moments on one calibration batch, measured with every earlier LUT layer already
corrected (a forward hook corrects each layer as the batch passes through it, in graph order). Scaling a
weight row scales its table column (T = P·Wᵀ), so the result is an ordinary LUT layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.vq.layer import lut_layers

RECALIBRATIONS = ("none", "bias", "affine")
MAX_GAIN = 4.0  # a_max: the affine gain stays in [1/4, 4] (a dead or exploding channel is not "corrected")


def channel_moments(y: Tensor, is_conv: bool) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation (M,) of a layer output: conv (B, M, H, W), linear (..., M)."""
    flat = y.transpose(0, 1).reshape(y.shape[1], -1) if is_conv else y.reshape(-1, y.shape[-1]).T  # (M, N)
    return flat.mean(dim=1), flat.std(dim=1, unbiased=False)


def correction(mean: Tensor, std: Tensor, target_mean: Tensor, target_std: Tensor, mode: str
               ) -> tuple[Tensor, Tensor]:
    """(gain a, offset o) (M,) with corrected output a·y + o: mean → target mean ("bias"), and std → target std
    ("affine", gain clipped to [1/MAX_GAIN, MAX_GAIN])."""
    if mode == "bias":
        gain = torch.ones_like(mean)
    else:
        gain = (target_std / std.clamp_min(1e-12)).clamp(1 / MAX_GAIN, MAX_GAIN)
        gain = torch.where(std > 1e-12, gain, torch.ones_like(gain))
    return gain, target_mean - gain * mean


@torch.no_grad()
def recalibrate(model: nn.Module, targets: dict[str, tuple[Tensor, Tensor]], images: Tensor, mode: str) -> None:
    """Correct every LUT layer named in `targets` (path -> float (mean, std)) on the batch `images`, in place."""
    if mode == "none":
        return
    handles = []
    for path, layer in lut_layers(model):
        if path not in targets:
            continue

        def hook(module: nn.Module, args: tuple[Tensor, ...], y: Tensor, path: str = path) -> Tensor:
            mean, std = channel_moments(y, module.is_conv)
            gain, offset = correction(mean, std, *targets[path], mode)
            module.weight.mul_(gain.reshape(-1, *([1] * (module.weight.dim() - 1))))
            bias = offset if module.bias is None else gain * module.bias + offset
            if module.bias is None:
                module.bias = nn.Parameter(bias)
            else:
                module.bias.copy_(bias)
            shape = (1, -1, 1, 1) if module.is_conv else (-1,)
            return y * gain.reshape(shape) + offset.reshape(shape)

        handles.append(layer.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
