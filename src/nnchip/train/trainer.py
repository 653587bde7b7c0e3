"""`train(model, data, config, eval_data=, teacher=)`: float or quantization-aware training of any nn.Module.

Under `torchrun` (WORLD_SIZE > 1) it trains with DistributedDataParallel over gloo (CPU): each rank sees a
disjoint shard per epoch (DistributedSampler), gradients are averaged, so all ranks end with equal weights;
rank 0 alone writes checkpoints and shows progress.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from nnchip.core.errors import ConfigError, DataError
from nnchip.data.augment import random_crop_flip
from nnchip.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from nnchip.train.config import TrainConfig
from nnchip.train.schedule import lr_at


@dataclass
class TrainResult:
    epochs: int
    steps: int
    final_loss: float
    seconds: float
    eval_acc: list[float] = field(default_factory=list)


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), the Hinton et al. soft-target loss."""
    log_p = F.log_softmax(student / temperature, dim=-1)
    q = F.softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD/AdamW over two parameter groups: the model's weights, and its quantizer parameters (LSQ steps) at
    `quant_lr_scale` × lr without weight decay; each group's "lr_scale" multiplies the scheduled rate."""
    quant_ids = {id(p) for m in model.modules() if getattr(m, "nnchip_kind", None) == "quantize"
                 for p in m.parameters(recurse=False)}
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise DataError("the model has no trainable parameters")
    groups = [{"params": [p for p in params if id(p) not in quant_ids], "lr_scale": 1.0,
               "weight_decay": config.weight_decay},
              {"params": [p for p in params if id(p) in quant_ids], "lr_scale": float(config.quant_lr_scale),
               "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    for group in groups:
        group["lr"] = config.lr * group["lr_scale"]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def train(model: nn.Module, data: Dataset, config: TrainConfig, *, eval_data: Dataset | None = None,
          teacher: nn.Module | None = None) -> TrainResult:
    """Train `model` in place on (image, label) pairs; returns losses, steps and per-epoch eval accuracy."""
    if len(data) == 0:  # type: ignore[arg-type]
        raise DataError("training data is empty")
    if _distributed() and not dist.is_initialized():
        dist.init_process_group("gloo")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = DistributedSampler(data, shuffle=True, seed=config.seed) if _distributed() else None
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=generator if sampler is None else None, drop_last=len(data) > config.batch_size)
    steps_per_epoch = len(loader)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if _distributed() else model
    if config.compile:
        net = compiled_for_training(net)
    optimizer = _optimizer(model, config)
    step, start_epoch = 0, 0
    if config.resume and config.checkpoint_dir and (found := latest_checkpoint(config.checkpoint_dir)):
        state = load_checkpoint(found, model, optimizer)
        step, start_epoch = int(state["step"]), int(state["epoch"]) + 1
    if teacher is not None:
        teacher.eval()
    show = config.progress and _rank() == 0 and sys.stderr.isatty()
    started, last_loss, eval_acc = time.perf_counter(), math.nan, []
    for epoch in range(start_epoch, config.epochs):
        generator.manual_seed(config.seed + epoch)  # per-epoch order: resuming reproduces it exactly
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show, leave=False)
        for images, labels in bar:
            if step >= total_steps:
                break
            if config.augment and images.dim() == 4 and images.shape[-1] >= 16:
                images = random_crop_flip(images, generator=generator)
            for group in optimizer.param_groups:
                group["lr"] = group["lr_scale"] * lr_at(step, total_steps, config.lr, config.schedule, warmup)
            logits = net(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            if teacher is not None and config.distill_alpha > 0:
                with torch.no_grad():
                    soft = teacher(images)
                kd = distillation_loss(logits, soft, config.distill_temperature)
                loss = (1 - config.distill_alpha) * loss + config.distill_alpha * kd
            if not torch.isfinite(loss):
                raise DataError(f"training diverged: loss is {float(loss.detach())} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            last_loss = float(loss.detach())
            bar.set_postfix(loss=f"{last_loss:.3f}")
        if eval_data is not None:
            eval_acc.append(evaluate(model, eval_data))
        if config.checkpoint_dir and _rank() == 0:
            save_checkpoint(config.checkpoint_dir, step, model, optimizer, {"epoch": epoch, "loss": last_loss})
        if step >= total_steps:
            break
    if _distributed():  # DDP syncs buffers before each forward; the last update happened per rank
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    model.eval()
    return TrainResult(epochs=config.epochs, steps=step, final_loss=last_loss,
                       seconds=time.perf_counter() - started, eval_acc=eval_acc)


def compiled_for_training(net: nn.Module) -> nn.Module:
    """`torch.compile(net)` (inductor), after checking that the C++ compiler its CPU kernels need is present."""
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        raise ConfigError("train.compile needs a C++ compiler (g++, c++ or clang++) on PATH for torch.compile")
    return torch.compile(net)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 512) -> float:
    """Top-1 accuracy (fraction in [0, 1]) in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for images, labels in DataLoader(data, batch_size=batch_size):
            correct += int((model(images).argmax(dim=-1) == labels).sum())
            total += int(labels.numel())
    finally:
        model.train(was_training)
    if total == 0:
        raise DataError("evaluation data is empty")
    return correct / total
