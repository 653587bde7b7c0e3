"""`prune(model, PruneConfig, example_inputs=...)`, reports of what pruning removed, and pruning fine-tuning.

    pruned = prune(model, PruneConfig(structure="nm", n=2, m=4))           # a pruned copy (masks)
    pruned = prune(model, PruneConfig(structure="channel", sparsity=0.3), example_inputs=x)   # smaller model
    report = compression_report(model, pruned, x)                          # parameters and MACs kept
Masks are parametrizations (nnchip.core.mask): they survive quantize(), QAT and the lowering.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from nnchip.core.errors import ConfigError
from nnchip.core.mask import weight_mask
from nnchip.core.nested_mask import set_sparsity_level
from nnchip.prune.config import PruneConfig
from nnchip.prune.nested import prune_nested, sandwich_levels
from nnchip.prune.registry import PRUNE_STRUCTURES
from nnchip.prune.regrow import PruneRegrow
from nnchip.prune.schedule import scheduled_levels, scheduled_sparsity


def _inputs(example_inputs: Tensor | tuple[Tensor, ...] | None) -> tuple[Tensor, ...] | None:
    if example_inputs is None or isinstance(example_inputs, tuple):
        return example_inputs
    return (example_inputs,)


def apply_pruning(model: nn.Module, config: PruneConfig, sparsity: float,
                  example_inputs: Tensor | tuple[Tensor, ...] | None = None) -> nn.Module:
    """Run the configured structure at `sparsity` on `model` itself (masks in place; channel: a new model)."""
    structure = PRUNE_STRUCTURES.get(config.structure, field="prune.structure")
    return structure(model, config, sparsity, _inputs(example_inputs))


def prune(model: nn.Module, config: PruneConfig, *, example_inputs: Tensor | tuple[Tensor, ...] | None = None,
          step: int | None = None) -> nn.Module:
    """A pruned copy of `model` at the schedule's sparsity for `step` (default: the last step, full sparsity).
    Nested levels (`config.levels`): nested masks at every level, level `config.level` active."""
    if not isinstance(config, PruneConfig):
        raise ConfigError(f"config must be a PruneConfig, got {type(config).__name__}")
    step = config.steps if step is None else step
    if config.nested:
        return prune_nested(copy.deepcopy(model), config, scheduled_levels(config, step))
    return apply_pruning(copy.deepcopy(model), config, scheduled_sparsity(config, step), example_inputs)


@dataclass(frozen=True)
class LayerSparsity:
    path: str
    shape: tuple[int, ...]
    density: float  # fraction of non-zero weights


def sparsity_report(model: nn.Module) -> list[LayerSparsity]:
    """Density of every conv/linear weight (masked or not), in module order."""
    out = []
    for path, layer in model.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            weight = layer.weight.detach()
            out.append(LayerSparsity(path, tuple(weight.shape), float((weight != 0).float().mean())))
    return out


def _effective_macs(model: nn.Module, example_inputs: tuple[Tensor, ...]) -> tuple[int, float]:
    """(dense MACs, MACs left on non-zero weights) per sample of example_inputs[0]."""
    from nnchip.hw.workload import workload_from_model

    work = workload_from_model(model, example_inputs[0])
    densities = {path: float(mask.mean()) for path, layer in model.named_modules()
                 if (mask := weight_mask(layer)) is not None}
    return work.macs, sum(layer.macs * densities.get(layer.name, 1.0) for layer in work.layers)


def compression_report(original: nn.Module, pruned: nn.Module,
                       example_inputs: Tensor | tuple[Tensor, ...]) -> dict[str, Any]:
    """Parameters (stored, and non-zero) and MACs per sample before/after, with the achieved reductions."""
    inputs = _inputs(example_inputs)
    assert inputs is not None
    params_before = sum(p.numel() for p in original.parameters())
    params_after = sum(p.numel() for p in pruned.parameters())
    weights = [layer.weight.detach() for layer in pruned.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights)
    macs_before, _ = _effective_macs(original, inputs)
    macs_after_dense, macs_after = _effective_macs(pruned, inputs)
    return {
        "params_before": params_before, "params_after": params_after, "params_nonzero": params_after - zeros,
        "param_reduction": 1.0 - (params_after - zeros) / params_before,
        "macs_before": macs_before, "macs_after": macs_after_dense, "macs_nonzero": macs_after,
        "mac_reduction": 1.0 - macs_after / macs_before,
    }


def finetune(model: nn.Module, data: Dataset, config: PruneConfig, *, epochs: int, lr: float,
             batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
             example_inputs: Tensor | tuple[Tensor, ...] | None = None, max_steps: int | None = None) -> nn.Module:
    """Prune and train together: the schedule's `steps` pruning steps are spread evenly over the first half
    of training (one-shot and prune-and-regrow: a single step before training); AdamW, cosine learning rate.
    Masks are set on `model` itself; channel pruning returns a new, smaller model (each gradual step removes
    the increment of the schedule relative to the channels left, so the final model has `sparsity` of the
    original channels). prune_regrow moves the masks every `regrow_every` steps (prune/regrow.py); nested
    levels train with the sandwich rule (prune/nested.py), BatchNorm statistics frozen, and end with level
    `config.level` active."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    total = min(max_steps or epochs * len(loader), epochs * len(loader))
    prune_steps = config.steps if config.schedule == "gradual" else 1
    at = {max(0, round(i * total / (2 * prune_steps))): i + 1 for i in range(prune_steps)}  # train step → prune step
    optimizer: torch.optim.Optimizer | None = None
    regrow: PruneRegrow | None = None
    sandwich = torch.Generator().manual_seed(seed)
    step, removed = 0, 0.0
    model.train()
    while step < total:
        for x, y in loader:
            if step in at:
                if config.nested:
                    model = _freeze_batchnorm(prune_nested(model, config, scheduled_levels(config, at[step])).train())
                else:
                    target = scheduled_sparsity(config, at[step])
                    # channels already removed are gone: remove the increment, relative to what is left
                    amount = 1.0 - (1.0 - target) / (1.0 - removed) if config.structure == "channel" else target
                    model = apply_pruning(model, config, amount, example_inputs).train()
                    removed = target
                optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
                if config.schedule == "prune_regrow":
                    regrow = PruneRegrow(model, config, total)
            assert optimizer is not None
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            moving = regrow is not None and regrow.due(step)
            optimizer.zero_grad()
            with regrow.capture() if moving and regrow is not None else contextlib.nullcontext():
                for level in sandwich_levels(len(config.levels), sandwich) if config.nested else (None,):
                    if level is not None:
                        set_sparsity_level(model, level)
                    nn.functional.cross_entropy(model(x), y).backward()  # sandwich: the losses add up
            optimizer.step()
            if moving and regrow is not None:
                regrow.update(step, optimizer)
            step += 1
            if step >= total:
                break
    if config.nested:
        set_sparsity_level(model, config.level)
    return model.eval()


def _freeze_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm normalizes with its running statistics (its affine parameters still train): all levels share
    one BatchNorm, and statistics updated by a mix of levels match none of them at inference."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model
