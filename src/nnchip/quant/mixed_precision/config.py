"""MixedPrecisionConfig: candidate weight bit-widths, the sensitivity measure and the budget of the ILP."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import MAX_BITS

SENSITIVITIES = ("quant_error", "hessian")
BUDGETS = ("size", "bops", "latency")


@dataclass(frozen=True)
class MixedPrecisionConfig:
    """Layer-wise weight bit-widths chosen by an integer program (algorithms.md §4).

    candidates          weight bit-widths a layer may take
    sensitivity         "quant_error": Ω_i(b) = measured output error with only layer i at b bits (sensitivity.py);
                        "hessian": Ω_i(b) = Tr(H_i)/n_i · ‖Q_b(W_i) − W_i‖² with Tr(H_i) by Hutchinson's
                        estimator (`hutchinson_samples` Rademacher probes)
    budget              "size": Σ_i params_i · b_i ≤ avg_bits · Σ_i params_i  (weight storage)
                        "bops": Σ_i MACs_i · b_i · a_bits ≤ avg_bits · a_bits · Σ_i MACs_i
                        "latency": Σ_i t_i(b_i) ≤ latency_us, t_i(b) the modelled latency (µs) of layer i on the
                        DSP engine of the FPGA model (hw/fpga.py) with b-bit weights and its own input bits
    avg_bits            the budget, as the average weight bit-width it allows ("size", "bops"); for "latency"
                        without `latency_us`, the budget is the modelled latency of uniform `avg_bits`-bit weights
                        as quantize() builds them (first/last layer at first_last_bits; avg_bits a whole number)
    latency_us          "latency": the budget in microseconds per image (None: from avg_bits, above)
    device              "latency": FPGA device of hw/specs/fpga.yaml (clock, DDR bandwidth, DSP type)
    t_a, t_b            "latency": the DSP engine, T_a × T_b DSPs (docs/hardware-models.md §2)
    hutchinson_samples  probes of the trace estimator (sensitivity "hessian")
    """

    candidates: tuple[int, ...] = (2, 4, 8)
    sensitivity: str = "quant_error"
    budget: str = "size"
    avg_bits: float = 4.0
    hutchinson_samples: int = 16
    latency_us: float | None = None
    device: str = "zcu102"
    t_a: int = 8
    t_b: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(sorted(set(self.candidates))))
        if not self.candidates:
            raise ConfigError("mixed_precision.candidates must list at least one bit-width")
        for bits in self.candidates:
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= MAX_BITS:
                raise ConfigError(f"mixed_precision.candidates: {bits!r} is not an integer in 2..{MAX_BITS}")
        if self.sensitivity not in SENSITIVITIES:
            raise ConfigError(f"mixed_precision.sensitivity must be one of {', '.join(SENSITIVITIES)}, "
                              f"got {self.sensitivity!r}")
        if self.budget not in BUDGETS:
            raise ConfigError(f"mixed_precision.budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if isinstance(self.avg_bits, bool) or not isinstance(self.avg_bits, (int, float)) or self.avg_bits <= 0:
            raise ConfigError(f"mixed_precision.avg_bits must be a positive number, got {self.avg_bits!r}")
        if isinstance(self.hutchinson_samples, bool) or not isinstance(self.hutchinson_samples, int) \
                or self.hutchinson_samples < 1:
            raise ConfigError(f"mixed_precision.hutchinson_samples must be a positive integer, "
                              f"got {self.hutchinson_samples!r}")
        if self.latency_us is not None and (isinstance(self.latency_us, bool)
                                            or not isinstance(self.latency_us, (int, float)) or self.latency_us <= 0):
            raise ConfigError(f"mixed_precision.latency_us must be a positive number, got {self.latency_us!r}")
        if self.budget == "latency" and self.latency_us is None and self.avg_bits != int(self.avg_bits):
            raise ConfigError(f"mixed_precision.avg_bits must be a whole number for a latency budget without "
                              f"latency_us, got {self.avg_bits!r}")
        for name in ("t_a", "t_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"mixed_precision.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"mixed_precision.device must be a device name, got {self.device!r}")
        from nnchip.hw.specs import load_fpga

        try:
            load_fpga(self.device)
        except ConfigError as error:
            raise ConfigError(f"mixed_precision.device: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["candidates"] = list(self.candidates)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "mixed_precision") -> MixedPrecisionConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown recipe key '{where}.{key}'; known here: {', '.join(sorted(known))}")
        values = dict(data)
        if "candidates" in values:
            values["candidates"] = tuple(values["candidates"] or ())
        return cls(**values)
