"""Block reconstruction shared by "brecq" and "qdrop": AdaRound variables + activation steps per block.

For each block (blocks.py: residual blocks, ViT attention/MLP sub-blocks, else single layers):
    min  ‖block_q(x_in) − block_fp(x_fp)‖²  +  λ·Σ_layers f_reg(V)
over the rounding variables V of every conv/linear in the block (Adam, `lr`) and the step size of every
activation quantizer in the block (LSQ-style gradient through the fake-quant, Adam, `act_lr`, cosine
decay), including the block's output quantizer. Before that, weight scales get a per-channel clip search
and activation ranges a clip search on the block's inputs (p = 2.4, as BRECQ initialises its steps).
x_in = x̃ (the quantized network's input) for BRECQ;
QDrop mixes x_in = where(u < p, x̃, x_fp) element-wise and, inside the block, every activation quantizer
keeps its quantized value with probability p (forward hooks), with p = `qdrop_prob`; at inference p = 1.
Budget: `iterations` steps per block on mini-batches of `batch_size` (defaults 300 × 32); the loss is
the MSE form (BRECQ's Fisher-weighted variant is not implemented). Step sizes stay positive by clamping.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from nnchip.quant.base import Quantizer
from nnchip.quant.ptq.blocks import Block, BlockData, walk_blocks
from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData, ensure_calibrated
from nnchip.quant.ptq.rounding import (
    beta_at,
    learned_rounding,
    reconstruction_loss,
    search_weight_scale,
    supports_adaround,
)
from nnchip.quant.quantize import QModel


def reconstruct_blocks(qmodel: QModel, data: CalibrationData, config: PTQConfig, *, keep_prob: float) -> None:
    """Reconstruct every block in order; keep_prob = 1 is BRECQ, keep_prob < 1 is QDrop."""
    ensure_calibrated(qmodel, data)
    generator = torch.Generator().manual_seed(config.seed)
    for block, block_data in walk_blocks(qmodel, data):
        reconstruct_block(block, block_data, config, keep_prob, generator)


def reconstruct_block(block: Block, data: BlockData, config: PTQConfig, keep_prob: float,
                      generator: torch.Generator) -> None:
    layers = [layer for _, layer in block.layers if supports_adaround(layer)]
    if config.weight_scale_search:
        for layer in layers:
            search_weight_scale(layer.weight_quantizer, layer.weight.detach())
    if config.act_scale_search:
        search_activation_scales(block, data.x_q, config.eval_batch_size)
    steps = [s for s in (_learnable_step(q) for _, q in block.act_quantizers) if s is not None]
    with learned_rounding(layers) as roundings, _steps_trainable(steps), _quantization_drop(block, keep_prob):
        groups = []
        if roundings:
            groups.append({"params": [r.V for r in roundings], "lr": config.lr})
        if steps and config.act_lr > 0:
            groups.append({"params": steps, "lr": config.act_lr})
        if not groups:
            return
        optimizer = torch.optim.Adam(groups)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        n = data.x_q.shape[0]
        for step in range(config.iterations):
            index = torch.randint(0, n, (min(config.batch_size, n),), generator=generator)
            x_in = data.x_q[index]
            if keep_prob < 1.0:
                x_in = torch.where(torch.rand(x_in.shape, generator=generator) < keep_prob, x_in, data.x_fp[index])
            loss = reconstruction_loss(block.module(x_in), data.y_fp[index])
            beta = beta_at(step, config.iterations, config.warmup, config.beta_start, config.beta_end)
            if beta is not None and roundings:
                loss = loss + config.reg_weight * sum(r.regularizer(beta) for r in roundings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if steps and config.act_lr > 0:  # cosine decay of the step-size learning rate
                decay = 0.5 * (1 + math.cos(math.pi * step / config.iterations))
                optimizer.param_groups[-1]["lr"] = base_lrs[-1] * decay
            optimizer.step()
            with torch.no_grad():
                for s in steps:
                    s.clamp_(min=1e-8)


@torch.no_grad()
def search_activation_scales(block: Block, x_q: Tensor, chunk: int, *, p: float = 2.4, steps: int = 30,
                             max_elements: int = 1 << 20) -> None:
    """Initialise each activation quantizer of the block by the clip ratio r ∈ [0.3, 1] of its calibrated
    range that minimises Σ|x − Q(x)|^p over its inputs (BRECQ's p = 2.4 search), in execution order."""
    searchable = [q for _, q in block.act_quantizers if _learnable_step(q) is not None and q.observer.count > 0]
    if not searchable:
        return
    seen: dict[int, list[Tensor]] = {id(q): [] for q in searchable}
    budget = {id(q): max_elements for q in searchable}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        if budget[id(module)] > 0:
            seen[id(module)].append(inputs[0].detach())
            budget[id(module)] -= inputs[0].numel()

    handles = [q.register_forward_pre_hook(hook) for q in searchable]
    try:
        for part in x_q.split(chunk):
            block.module(part)
            if all(b <= 0 for b in budget.values()):
                break
    finally:
        for handle in handles:
            handle.remove()
    for q in searchable:
        x = torch.cat(seen[id(q)])
        lo, hi = q.observer.range()
        best_err, best_ratio = math.inf, 1.0
        for ratio in torch.linspace(1.0, 0.3, steps).tolist():
            q.initialize_from_range(lo * ratio, hi * ratio)
            err = float((q.fake_quant(x) - x).abs().pow(p).sum())
            if err < best_err:
                best_err, best_ratio = err, ratio
        q.initialize_from_range(lo * best_ratio, hi * best_ratio)


def _learnable_step(q: Quantizer) -> Tensor | None:
    """The tensor holding the step size used in the forward: LSQ's parameter or the static scale buffer."""
    if not q.enabled or not bool(q.initialized) or q.spec.quantizer == "fixed":
        return None
    step = getattr(q, "step", None)
    if isinstance(step, nn.Parameter):
        return step
    if q.get_scale() is q.scale:
        return q.scale
    return None


@contextmanager
def _steps_trainable(steps: list[Tensor]) -> Iterator[None]:
    before = [s.requires_grad for s in steps]
    for s in steps:
        s.requires_grad_(True)
    try:
        yield
    finally:
        for s, state in zip(steps, before, strict=True):
            s.requires_grad_(state)


@contextmanager
def _quantization_drop(block: Block, keep_prob: float) -> Iterator[None]:
    """QDrop inside the block: each activation quantizer output keeps its quantized value with probability
    keep_prob, otherwise passes its float input through."""
    if keep_prob >= 1.0:
        yield
        return

    def hook(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return torch.where(torch.rand_like(output) < keep_prob, output, inputs[0])

    handles = [q.register_forward_hook(hook) for _, q in block.act_quantizers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
