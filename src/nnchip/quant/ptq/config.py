"""PTQConfig: which post-training methods run, in order, and their budgets (frozen, validated)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from nnchip.core.errors import ConfigError


@dataclass(frozen=True)
class PTQConfig:
    """What `ptq(qmodel, calib_batches, config)` does.

    methods           registered PTQ method names applied in order, e.g.
                      ("smoothquant", "calibrate", "bias_correction", "adaround")
    iterations        optimisation steps per layer (adaround) or per block (brecq, qdrop)
    lr                Adam learning rate of the AdaRound rounding variables V
    act_lr            Adam learning rate of the activation step sizes (brecq, qdrop)
    batch_size        calibration samples per optimisation step
    eval_batch_size   samples per forward pass when propagating calibration data
    seed              seed of mini-batch sampling and QDrop masks
    qdrop_prob        QDrop: probability that an activation element keeps its quantized value during
                      reconstruction (0.5 in the paper; 1.0 would be BRECQ)
    smoothquant_alpha SmoothQuant migration strength α in s_j = max|X_j|^α / max|W_j|^(1−α)
    reg_weight        AdaRound regulariser weight λ
    beta_start, beta_end   AdaRound β annealed linearly after `warmup` (fraction of iterations)
    warmup            fraction of iterations without the rounding regulariser
    weight_scale_search    before learning the rounding, choose each weight scale (per channel) by a
                      clip-ratio search minimising ‖W − Q(W)‖_p (p = 2.4), as AdaRound/BRECQ do
    act_scale_search  brecq/qdrop: before reconstructing a block, shrink each activation quantizer's
                      calibrated range by the clip ratio minimising ‖x − Q(x)‖_p on the block's inputs
    """

    methods: tuple[str, ...] = ("calibrate",)
    iterations: int = 300
    lr: float = 1e-2
    act_lr: float = 4e-4
    batch_size: int = 32
    eval_batch_size: int = 128
    seed: int = 0
    qdrop_prob: float = 0.5
    smoothquant_alpha: float = 0.5
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    weight_scale_search: bool = True
    act_scale_search: bool = True

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        if not methods:
            raise ConfigError("PTQConfig.methods must name at least one PTQ method")
        from nnchip.quant.ptq.registry import PTQ_METHODS

        for name in methods:
            PTQ_METHODS.get(str(name), field="PTQConfig.methods")
        for name in ("iterations", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PTQConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"PTQConfig.seed must be an integer, got {self.seed!r}")
        for name in ("lr", "act_lr", "reg_weight", "beta_start", "beta_end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"PTQConfig.{name} must be a non-negative number, got {value!r}")
        for name in ("qdrop_prob", "smoothquant_alpha", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"PTQConfig.{name} must be a number in [0, 1], got {value!r}")
        for name in ("weight_scale_search", "act_scale_search"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"PTQConfig.{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["methods"] = list(self.methods)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "ptq") -> PTQConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        values = dict(data)
        if "methods" in values and not isinstance(values["methods"], str):
            values["methods"] = tuple(values["methods"])
        return cls(**values)
