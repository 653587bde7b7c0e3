"""TrainConfig: one frozen, validated description of a float or quantization-aware training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nnchip.core.errors import ConfigError

SCHEDULES = ("cosine", "onecycle", "constant")
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """epochs, batch_size, lr (peak), weight_decay, momentum, optimizer sgd|adamw, schedule cosine|onecycle|
    constant, warmup_epochs (cosine), label_smoothing, distill_alpha (weight of the KL term when a teacher is
    given) and distill_temperature, augment (random crop + flip for ≥16×16 images), seed, checkpoint_dir
    (None: no checkpoints), resume (continue from the latest checkpoint there), progress (tqdm bars),
    max_steps (stop after this many optimizer steps; the schedule spans them), quant_lr_scale (learning rate
    of quantizer parameters — modules with nnchip_kind "quantize", e.g. LSQ step sizes — as a multiple of
    lr, on the same schedule; they get no weight decay, which would shrink the steps towards zero), compile
    (run the training forward and backward through `torch.compile`: the first step compiles for a minute or
    two and needs a C++ compiler, after which fake quantization fuses with its neighbouring operations — a
    W4A4 ViT QAT step on 2 CPU threads fell from 1.73× to 1.23× of the float step; off by default)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    optimizer: str = "sgd"
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    augment: bool = False
    seed: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True
    max_steps: int | None = None
    quant_lr_scale: float = 1.0
    compile: bool = False

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a positive number"),
            ("weight_decay", self.weight_decay >= 0, "non-negative"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
            ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            ("warmup_epochs", 0 <= self.warmup_epochs < self.epochs, "in [0, epochs)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("distill_alpha", 0 <= self.distill_alpha <= 1, "in [0, 1]"),
            ("distill_temperature", self.distill_temperature > 0, "positive"),
            ("max_steps", self.max_steps is None or self.max_steps >= 1, "None or >= 1"),
            ("quant_lr_scale", isinstance(self.quant_lr_scale, (int, float)) and self.quant_lr_scale >= 0,
             "a non-negative number"),
            ("compile", isinstance(self.compile, bool), "true or false"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"train.{name} must be {rule}, got {getattr(self, name)!r}")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("train.resume needs train.checkpoint_dir")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
