"""Block scores for block pruning: magnitude, or first/second-order Taylor terms from calibration batches.

Removing a block sets ΔW = −W on it; the loss change is expanded to second order with the diagonal
empirical Fisher as the Hessian (algorithms.md §7.2):
    g    = (1/B) Σ_b ∂L_b/∂W              mean gradient over the B calibration batches
    F    = (1/B) Σ_b (∂L_b/∂W)²           empirical Fisher (diagonal), batch gradients squared
    magnitude(block) = Σ_block |w|
    taylor1(block)   = |Σ_block g·w|
    taylor2(block)   = |Σ_block g·w| + ½ Σ_block w²·F
L_b is the mean cross-entropy of batch b against its labels, or — label-free, as for post-training pruning from
unlabelled images — against the model's own predictions (argmax of its logits). w is the current (masked)
weight, so blocks already pruned score 0 and stay pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from nnchip.core.errors import ConfigError, DataError
from nnchip.core.mask import raw_weight
from nnchip.prune.block_view import block_sum

Batch = Tensor | Sequence[Tensor]  # images, or (images, labels)


def calibration_batches(inputs: Tensor, batch_size: int) -> list[Tensor]:
    """Split a (N, ...) tensor of calibration images into batches of `batch_size` (the last may be smaller)."""
    return list(torch.split(inputs, batch_size))


def gradient_statistics(model: nn.Module, layers: Sequence[nn.Module],
                        batches: Iterable[Batch]) -> list[tuple[Tensor, Tensor]]:
    """(g, F) of each layer's weight (each weight-shaped) over `batches`; the model is left as it was."""
    weights = [raw_weight(layer) for layer in layers]
    flags = [w.requires_grad for w in weights]
    training = model.training
    grads = [torch.zeros_like(w) for w in weights]
    fisher = [torch.zeros_like(w) for w in weights]
    count = 0
    model.eval()
    try:
        for w in weights:
            w.requires_grad_(True)
        for batch in batches:
            x, y = (batch, None) if isinstance(batch, Tensor) else (batch[0], batch[1])
            with torch.enable_grad():
                logits = model(x)
                if logits.dim() != 2:
                    raise DataError(f"Taylor block scores need (batch, classes) logits, got shape "
                                    f"{tuple(logits.shape)}")
                target = logits.detach().argmax(dim=1) if y is None else y
                loss = nn.functional.cross_entropy(logits, target)
                batch_grads = torch.autograd.grad(loss, weights, allow_unused=True)
            for g, f, d in zip(grads, fisher, batch_grads, strict=True):
                if d is not None:  # a layer the forward does not reach has no gradient
                    g.add_(d)
                    f.add_(d * d)
            count += 1
    finally:
        for w, flag in zip(weights, flags, strict=True):
            w.requires_grad_(flag)
        model.train(training)
    if count == 0:
        raise DataError("Taylor block scores need at least one calibration batch")
    return [(g / count, f / count) for g, f in zip(grads, fisher, strict=True)]


def block_scores(weight: Tensor, shape: tuple[int, int], score: str, grad: Tensor | None = None,
                 fisher: Tensor | None = None) -> Tensor:
    """Score of every block of `weight`'s (C_out, K) view: (C_out/r, K/c), see the module docstring."""
    w = weight.detach()
    if score == "magnitude":
        return block_sum(w.abs(), shape)
    if grad is None or fisher is None:
        raise ConfigError(f"prune.score {score!r} needs the gradient statistics of calibration batches")
    first = block_sum(grad * w, shape).abs()
    if score == "taylor1":
        return first
    if score == "taylor2":
        return first + 0.5 * block_sum(w * w * fisher, shape)
    raise ConfigError(f"prune.score must be one of magnitude, taylor1, taylor2, got {score!r}")
