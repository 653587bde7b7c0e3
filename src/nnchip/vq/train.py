"""`train_vq(model, data, config, teacher=)`: the multistage (LUTBoost-style) training of a `vq` model.

Stage 1 (k-means initialisation) happens in `vq`. Then, on (image, label) pairs:
  2 reconstruct  only the centroids train; loss = Σ_layers ‖x̂·Wᵀ − sg(x·Wᵀ)‖² / ‖x·Wᵀ‖² (each layer sees the
                 inputs that the hard LUT layers before it produce)
  3 joint        every parameter trains; hard assignment forward, soft assignment (temperature) backward;
                 loss = cross-entropy, blended with distillation from `teacher` (the float model) if given
                 (`backward="ste"`: straight-through the exact layer, + β · Σ_layers reconstruction loss)
  4 tables       table quantization is switched on (integer tables, `VQConfig.table_bits`)
  5 final        as stage 3, the forward value computed from the integer tables (straight-through)
AdamW with a cosine learning rate per stage; a progress bar per epoch; with `checkpoint_dir`, a checkpoint
per epoch in `checkpoint_dir/<stage>/` (the QAT trainer's format).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from nnchip.core.errors import DataError
from nnchip.train.checkpoint import save_checkpoint
from nnchip.train.schedule import lr_at
from nnchip.train.trainer import distillation_loss
from nnchip.vq.config import VQTrainConfig
from nnchip.vq.layer import lut_layers, set_mode

STAGES = ("reconstruct", "joint", "final")


@dataclass
class VQTrainResult:
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time
    final_loss: dict[str, float] = field(default_factory=dict)  # stage -> loss of its last step


def _stage_loss(model: nn.Module, stage: str, images: Tensor, labels: Tensor, config: VQTrainConfig,
                teacher: nn.Module | None) -> Tensor:
    logits = model(images)
    if stage == "reconstruct":
        losses = [layer.lut_loss for _, layer in lut_layers(model) if layer.lut_loss is not None]
        return torch.stack(losses).sum()
    loss = F.cross_entropy(logits, labels)
    if config.backward == "ste" and config.beta > 0:
        loss = loss + config.beta * torch.stack([layer.lut_loss for _, layer in lut_layers(model)
                                                 if layer.lut_loss is not None]).sum()
    if teacher is not None and config.distill_alpha > 0:
        with torch.no_grad():
            soft = teacher(images)
        loss = (1 - config.distill_alpha) * loss + config.distill_alpha * distillation_loss(
            logits, soft, config.distill_temperature)
    return loss


def _run_stage(model: nn.Module, data: Dataset, stage: str, epochs: int, lr: float, params: list[nn.Parameter],
               config: VQTrainConfig, teacher: nn.Module | None, max_steps: int | None) -> float:
    generator = torch.Generator().manual_seed(config.seed + STAGES.index(stage))  # each stage its own order
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator,
                        drop_last=len(data) > config.batch_size)  # type: ignore[arg-type]
    total = max_steps or len(loader) * epochs
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    show = config.progress and sys.stderr.isatty()
    step, last = 0, float("nan")
    model.train()
    for epoch in range(epochs):
        bar = tqdm(loader, desc=f"vq {stage} {epoch + 1}/{epochs}", disable=not show, leave=False)
        for images, labels in bar:
            if step >= total:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, lr, "cosine")
            loss = _stage_loss(model, stage, images, labels, config, teacher)
            if not torch.isfinite(loss):
                raise DataError(f"vq {stage} training diverged: loss is {float(loss.detach())} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            last = float(loss.detach())
            bar.set_postfix(loss=f"{last:.4f}")
        if config.checkpoint_dir:
            save_checkpoint(Path(config.checkpoint_dir) / stage, step, model, optimizer,
                            {"epoch": epoch, "loss": last, "stage": stage})
        if step >= total:
            break
    return last


def train_vq(model: nn.Module, data: Dataset, config: VQTrainConfig, *, teacher: nn.Module | None = None
             ) -> VQTrainResult:
    """Run stages 2–5 on `model` (a `vq` result) in place; returns per-stage wall times and final losses."""
    layers = lut_layers(model)
    if not layers:
        raise DataError("train_vq: the model has no LUT layers (run nnchip.vq.vq first)")
    if len(data) == 0:  # type: ignore[arg-type]
        raise DataError("vq training data is empty")
    torch.manual_seed(config.seed)
    if teacher is not None:
        teacher.eval()
    result = VQTrainResult()
    codebooks = [layer.codebooks for _, layer in layers]
    everything = list(model.parameters())
    plan = (("reconstruct", config.recon_epochs, config.recon_lr, codebooks, False),
            ("joint", config.joint_epochs, config.joint_lr, everything, False),
            ("final", config.final_epochs, config.final_lr, everything, True))
    for index, (stage, epochs, lr, params, quantized) in enumerate(plan):
        soft = stage != "reconstruct" and config.backward == "soft"
        set_mode(model, "joint" if soft else "reconstruct", quantize_tables=quantized)
        if epochs == 0:
            continue
        started = time.perf_counter()
        trainable = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        result.final_loss[stage] = _run_stage(model, data, stage, epochs, lr, params, config, teacher,
                                              config.stage_steps(index))
        result.seconds[stage] = time.perf_counter() - started
    for p in model.parameters():
        p.requires_grad_(True)
    set_mode(model, "hard", quantize_tables=True)
    for _, layer in layers:
        layer.lut_loss = None
    model.eval()
    return result
