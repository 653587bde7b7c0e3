"""Configs of vector quantization: what `vq(model, VQConfig)` converts, and how `train_vq` trains it.

VQConfig (notation of the algorithms reference §8: sub-vector length v, K centroids per codebook)
    v                   sub-vector length; must divide every converted layer's input width D (conv: C_in·k_h·k_w,
                        im2col order channel-major (c, i, j)) — no padding rule, an indivisible layer is an error
    k                   centroids per codebook (K >= 2); indices take ceil(log2 K) bits
    metric              registered distance: "l2", "l1", "chebyshev"
    layers              "inner" (every conv/linear but the first and the last, in graph order) or "all"
    include / exclude   explicit module paths: `include` (if given) replaces `layers`; `exclude` removes paths
    table_bits          integer bits of the look-up tables (symmetric, narrow), 2..16
    table_granularity   "channel" (one scale per output channel, shared by all codebooks) or "tensor"
    kmeans_iters        Lloyd iterations of the initialisation; kmeans_samples: sub-vectors sampled per layer
    kmeans_init         seeding of k-means: "random" (K random samples) or "kmeans++" (D² sampling)
    recalibrate         after conversion, per output channel: "bias" restores the float layer's mean, "affine" its
                        mean and standard deviation (BatchNorm re-estimation, nnchip.vq.recalibrate), "none"
VQTrainConfig (LUTBoost-style stages, each a number of epochs; 0 skips the stage)
    recon_*             stage 2: centroids learn to reconstruct each layer's output (W, b frozen)
    joint_*             stage 3: everything trains; hard assignment forward, soft (temperature) backward
    final_*             stage 5: fine-tune with the integer tables (stage 4 switches table quantization on)
    max_steps           step cap of every stage, or one per stage (recon, joint, final); None: whole epochs
    backward            joint/final stages: "soft" (LUT-NN: soft assignment with a learned temperature carries the
                        gradient) or "ste" (LUT-DLA: straight-through the exact layer; the centroids learn from
                        `beta` · the layers' output-reconstruction loss; cheaper: no (C, N, K) soft tensors)
    temperature         multiplies each layer's initial softmax temperature (the median nearest distance)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from nnchip.core.errors import ConfigError

LAYER_CHOICES = ("inner", "all")
TABLE_GRANULARITIES = ("channel", "tensor")
BACKWARDS = ("soft", "ste")


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def _int_field(where: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        rule = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise ConfigError(f"{where} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class VQConfig:
    v: int = 4
    k: int = 16
    metric: str = "l2"
    layers: str = "inner"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    table_bits: int = 8
    table_granularity: str = "channel"
    kmeans_iters: int = 20
    kmeans_samples: int = 4096
    kmeans_init: str = "kmeans++"
    recalibrate: str = "affine"
    seed: int = 0

    def __post_init__(self) -> None:
        from nnchip.vq.kmeans import INITS
        from nnchip.vq.metrics import METRICS
        from nnchip.vq.recalibrate import RECALIBRATIONS

        _int_field("vq.v", self.v, 1)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ConfigError(f"vq.k (centroids per codebook) must be an integer >= 2, got {self.k!r}")
        _int_field("vq.k", self.k, 2, 65536)
        METRICS.get(self.metric, field="vq.metric")
        if self.layers not in LAYER_CHOICES:
            raise ConfigError(f"vq.layers must be one of {', '.join(LAYER_CHOICES)}, got {self.layers!r}")
        _int_field("vq.table_bits", self.table_bits, 2, 16)
        if self.table_granularity not in TABLE_GRANULARITIES:
            raise ConfigError(f"vq.table_granularity must be one of {', '.join(TABLE_GRANULARITIES)}, "
                              f"got {self.table_granularity!r}")
        _int_field("vq.kmeans_iters", self.kmeans_iters, 1)
        _int_field("vq.kmeans_samples", self.kmeans_samples, 2)
        if self.kmeans_init not in INITS:
            raise ConfigError(f"vq.kmeans_init must be one of {', '.join(INITS)}, got {self.kmeans_init!r}")
        if self.recalibrate not in RECALIBRATIONS:
            raise ConfigError(f"vq.recalibrate must be one of {', '.join(RECALIBRATIONS)}, got {self.recalibrate!r}")
        for name in ("include", "exclude"):
            if not all(isinstance(p, str) for p in getattr(self, name)):
                raise ConfigError(f"vq.{name} must be a list of module paths")

    @property
    def index_bits(self) -> int:
        return max(1, (self.k - 1).bit_length())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["include"], out["exclude"] = list(self.include), list(self.exclude)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "vq") -> VQConfig:
        return _from_dict(cls, data, where)


@dataclass(frozen=True)
class VQTrainConfig:
    recon_epochs: int = 1
    recon_lr: float = 3e-3
    joint_epochs: int = 2
    joint_lr: float = 1e-3
    final_epochs: int = 1
    final_lr: float = 3e-4
    batch_size: int = 64
    backward: str = "soft"
    beta: float = 1.0
    temperature: float = 1.0
    weight_decay: float = 0.0
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    max_steps: int | tuple[int, int, int] | None = None  # cap per stage, or (recon, joint, final); None: epochs
    seed: int = 0
    checkpoint_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("recon_epochs", "joint_epochs", "final_epochs"):
            _int_field(f"vq_train.{name}", getattr(self, name), 0)
        _int_field("vq_train.batch_size", self.batch_size, 1)
        for name in ("recon_lr", "joint_lr", "final_lr", "temperature", "distill_temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"vq_train.{name} must be a positive number, got {value!r}")
        if self.backward not in BACKWARDS:
            raise ConfigError(f"vq_train.backward must be one of {', '.join(BACKWARDS)}, got {self.backward!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or self.beta < 0:
            raise ConfigError(f"vq_train.beta must be a non-negative number, got {self.beta!r}")
        if not 0 <= self.distill_alpha <= 1:
            raise ConfigError(f"vq_train.distill_alpha must be in [0, 1], got {self.distill_alpha!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"vq_train.weight_decay must be non-negative, got {self.weight_decay!r}")
        if isinstance(self.max_steps, tuple):
            if len(self.max_steps) != 3:
                raise ConfigError(f"vq_train.max_steps must be one integer or three (recon, joint, final), "
                                  f"got {list(self.max_steps)}")
            for value in self.max_steps:
                _int_field("vq_train.max_steps", value, 1)
        elif self.max_steps is not None:
            _int_field("vq_train.max_steps", self.max_steps, 1)

    def stage_steps(self, stage: int) -> int | None:
        """The step cap of stage 0 (reconstruct), 1 (joint) or 2 (final), None without one."""
        return self.max_steps[stage] if isinstance(self.max_steps, tuple) else self.max_steps

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if isinstance(self.max_steps, tuple):
            out["max_steps"] = list(self.max_steps)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "vq_train") -> VQTrainConfig:
        return _from_dict(cls, data, where)
