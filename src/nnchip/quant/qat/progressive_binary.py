"""VAQF-style binary-weight ViT training (Sun et al., arXiv 2201.06618; reference/hardware.md §9.3).

Three stages on one QModel whose non-edge conv/linear weights use the registered "binary" quantizer
(w_b = α·sign(w) per output channel, clipped STE) and whose activations use `act_quantizer` at `act_bits`:
  1. activations quantized, binary weights off (latent float weights train with the quantized activations);
  2. + attention projections binarised: linears whose output reaches a matmul (q, k, v) or whose input
     comes from one (the output projection), found from graph structure;
  3. + every other binary layer (the MLP linears).
First and last layers stay at `first_last_bits` (an explicit QuantConfig choice). Every stage trains
with distillation from the float model: loss = (1 − λ)·CE(y) + λ·T²·KL(softmax(t/T) ‖ softmax(s/T)).
Training uses a minimal local loop (Adam, cosine decay per stage); `nnchip.train` is not required.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from nnchip.core.errors import ConfigError, DataError
from nnchip.core.op_kinds import LAYOUT_KINDS
from nnchip.quant.modules import QConv2d, QLinear
from nnchip.quant.quantize import QModel, calibrate, quantize
from nnchip.quant.spec import QuantConfig, QuantSpec, default_act_spec

PASS_KINDS = LAYOUT_KINDS | {"quantize", "scale"}


@dataclass(frozen=True)
class ProgressiveBinaryConfig:
    """act_bits, act_quantizer   activation format (QAT quantizer, e.g. "lsq")
    first_last_bits             bits of the first and last layer (weights and inputs)
    epochs                      epochs of the three stages (activations, + attention, + MLP)
    lr, weight_decay            Adam settings (cosine decay within each stage)
    batch_size                  samples per step when `data` is a pair of tensors
    distill_weight, temperature λ and T of the distillation loss
    seed                        shuffling seed"""

    act_bits: int = 8
    act_quantizer: str = "lsq"
    first_last_bits: int = 8
    epochs: tuple[int, int, int] = (2, 2, 2)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    distill_weight: float = 0.5
    temperature: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "epochs", tuple(self.epochs))
        if len(self.epochs) != 3 or any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in self.epochs):
            raise ConfigError(f"ProgressiveBinaryConfig.epochs must be 3 non-negative integers, got {self.epochs!r}")
        if isinstance(self.act_bits, bool) or not isinstance(self.act_bits, int) or not 2 <= self.act_bits <= 16:
            raise ConfigError(f"ProgressiveBinaryConfig.act_bits must be an integer in 2..16, got {self.act_bits!r}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"ProgressiveBinaryConfig.distill_weight must be in [0, 1], got {self.distill_weight!r}")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"ProgressiveBinaryConfig.{name} must be positive, got {getattr(self, name)!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"ProgressiveBinaryConfig.batch_size must be a positive integer, got {self.batch_size!r}")

    def quant_config(self) -> QuantConfig:
        return QuantConfig(
            weight=QuantSpec(bits=1, quantizer="binary", granularity="channel"),
            act=default_act_spec(self.act_bits, self.act_quantizer),
            first_last_bits=self.first_last_bits,
        )


def binary_layers(qmodel: QModel) -> list[tuple[str, QConv2d | QLinear]]:
    return [(p, layer) for p, layer in qmodel.layers() if layer.weight_quantizer.spec.quantizer == "binary"]


def attention_projection_layers(qmodel: QModel) -> list[str]:
    """Paths of linears whose output reaches a matmul (q, k, v) or whose input comes from one (out proj),
    following only layout ops, positive scalings and quantizers."""
    gm = qmodel.gm
    found = []
    for node in gm.graph.nodes:
        if node.meta.get("nnchip_kind") != "linear":
            continue
        if _reaches_matmul(node, downstream=True) or _reaches_matmul(node.args[0], downstream=False):
            found.append(str(node.target))
    return found


def _reaches_matmul(start: object, *, downstream: bool) -> bool:
    if not isinstance(start, fx.Node):
        return False
    frontier, seen = [start], set()
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        kind = node.meta.get("nnchip_kind")
        if kind == "matmul" and node is not start:
            return True
        if node is start or kind in PASS_KINDS:
            nxt = list(node.users) if downstream else node.all_input_nodes
            frontier.extend(nxt)
    return False


def progressive_binarize(model: nn.Module, data: object, config: ProgressiveBinaryConfig | None = None, *,
                         example_inputs: Tensor, teacher: nn.Module | None = None,
                         calib_batches: Iterable[Tensor] | None = None) -> QModel:
    """Train a binary-weight version of `model` in three stages; returns the QModel in eval mode.

    data: (inputs, targets) tensors, or a re-iterable of (inputs, targets) batches.
    teacher: the distillation teacher (default: a frozen copy of `model`)."""
    config = config or ProgressiveBinaryConfig()
    teacher = (teacher or copy.deepcopy(model)).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    qmodel = quantize(model, config.quant_config(), example_inputs=example_inputs)
    layers = dict(binary_layers(qmodel))
    if not layers:
        raise ConfigError("progressive_binarize: the model has no conv/linear layer besides the first and last")
    attention = [p for p in attention_projection_layers(qmodel) if p in layers]
    mlp = [p for p in layers if p not in attention]
    for layer in layers.values():
        layer.weight_quantizer.enabled = False
    calibrate(qmodel, calib_batches if calib_batches is not None else (x for x, _ in _batches(data, config, 0)))
    generator_seed = config.seed
    for stage, (switch_on, epochs) in enumerate(zip(([], attention, mlp), config.epochs, strict=True)):
        for path in switch_on:
            layers[path].weight_quantizer.enabled = True
        _train_stage(qmodel, teacher, data, config, epochs, generator_seed + stage)
    return qmodel.eval()


def _batches(data: object, config: ProgressiveBinaryConfig, seed: int) -> Iterable[tuple[Tensor, Tensor]]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        inputs, targets = data
        if inputs.shape[0] == 0 or inputs.shape[0] != targets.shape[0]:
            raise DataError("progressive_binarize: inputs and targets must be non-empty and of equal length")
        order = torch.randperm(inputs.shape[0], generator=torch.Generator().manual_seed(seed))
        return [(inputs[idx], targets[idx]) for idx in order.split(config.batch_size)]
    return data  # type: ignore[return-value]


def distillation_loss(student: Tensor, teacher: Tensor, targets: Tensor, weight: float, temperature: float) -> Tensor:
    """(1 − λ)·CE(student, y) + λ·T²·KL(softmax(teacher/T) ‖ softmax(student/T))."""
    hard = F.cross_entropy(student, targets)
    if weight == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student / temperature, dim=-1), F.softmax(teacher / temperature, dim=-1),
                    reduction="batchmean") * temperature**2
    return (1 - weight) * hard + weight * soft


def _train_stage(qmodel: QModel, teacher: nn.Module, data: object, config: ProgressiveBinaryConfig, epochs: int,
                 seed: int) -> None:
    if epochs == 0:
        return
    params = [p for p in qmodel.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    batches_per_epoch = max(1, len(list(_batches(data, config, seed))))
    total = epochs * batches_per_epoch
    step = 0
    qmodel.train()
    for epoch in range(epochs):
        for inputs, targets in _batches(data, config, seed * 1000 + epoch):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            with torch.no_grad():
                soft_targets = teacher(inputs)
            loss = distillation_loss(qmodel(inputs), soft_targets, targets, config.distill_weight, config.temperature)
            if not torch.isfinite(loss):
                raise DataError(f"progressive_binarize: loss became {float(loss)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    qmodel.eval()
