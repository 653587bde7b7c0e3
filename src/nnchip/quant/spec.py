"""User-facing quantization configs: frozen dataclasses, validated on construction, to/from dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import MAX_BITS

GRANULARITIES = ("tensor", "channel", "group", "token")
CONFIG_VERSION = 1


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized: number format, granularity, algorithm and its observer.

    bits         1..16
    quantizer    registered quantizer name (nnchip.quant.QUANTIZERS), e.g. "minmax", "lsq", "binary"
    observer     registered observer name used for calibration / initialisation (nnchip.quant.OBSERVERS)
    signed       signed integer grid (weights are always signed)
    symmetric    zero point 0; False gives an integer zero point (activations only)
    narrow       drop the most negative code (symmetric signed grids; default for weights in QuantConfig)
    granularity  "tensor", "channel" (weights: per output channel), "group" (weights: groups of
                 `group_size` output channels), "token" (activations: one static scale per token position)
    options      quantizer/observer options as (name, value) pairs, e.g. (("percentile", 99.99),)
    """

    bits: int = 8
    quantizer: str = "minmax"
    observer: str = "minmax"
    signed: bool = True
    symmetric: bool = True
    narrow: bool = False
    granularity: str = "tensor"
    group_size: int | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise ConfigError(f"bits must be an integer in 1..{MAX_BITS}, got {self.bits!r}")
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if self.granularity == "group" and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ConfigError(f"group_size must be a positive integer for granularity 'group', got {self.group_size!r}")
        if self.narrow and not (self.signed and self.symmetric):
            raise ConfigError("narrow requires a signed, symmetric grid")
        if isinstance(self.options, Mapping):
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))
        from nnchip.quant.registry import OBSERVERS, QUANTIZERS

        QUANTIZERS.get(self.quantizer, field="quantizer")
        OBSERVERS.get(self.observer, field="observer")

    def option(self, name: str, default: Any) -> Any:
        return dict(self.options).get(name, default)

    def with_bits(self, bits: int) -> QuantSpec:
        return replace(self, bits=bits)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["options"] = dict(self.options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "spec") -> QuantSpec:
        return _from_dict(cls, data, where)


def default_weight_spec(bits: int = 8, quantizer: str = "minmax") -> QuantSpec:
    """Symmetric, narrow, per-output-channel weights (integer-semantics rule 1)."""
    narrow = bits >= 2 and quantizer not in ("binary", "ternary", "pot", "dorefa")
    return QuantSpec(bits=bits, quantizer=quantizer, granularity="channel", narrow=narrow)


def default_act_spec(bits: int = 8, quantizer: str = "minmax") -> QuantSpec:
    """Unsigned activations with an integer zero point (zero point 0 after ReLU by construction)."""
    return QuantSpec(bits=bits, quantizer=quantizer, signed=False, symmetric=False)


@dataclass(frozen=True)
class LayerOverride:
    """Per-layer precision, matched on the module path a user reads in `print(model)`."""

    path: str
    weight: QuantSpec | None = None
    act: QuantSpec | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "override") -> LayerOverride:
        if "path" not in data:
            raise ConfigError(f"{where}.path is required")
        unknown = set(data) - {"path", "weight", "act"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(
            path=str(data["path"]),
            weight=QuantSpec.from_dict(data["weight"], where=f"{where}.weight") if data.get("weight") else None,
            act=QuantSpec.from_dict(data["act"], where=f"{where}.act") if data.get("act") else None,
        )


SOFTMAX_IMPLS = ("table", "shiftmax")
GELU_IMPLS = ("table", "shiftgelu")


@dataclass(frozen=True)
class QuantConfig:
    """What `quantize(model, config)` does.

    weight, act       specs for every conv/linear weight and every conv/linear/matmul input
    other_bits        bits of tensors consumed only by other ops (residual adds, LayerNorm, softmax and
                      GELU inputs, pooling), at least act.bits; stated so W4A4 means what it says
    first_last_bits   weight and input bits of the first and last conv/linear layers (None: same as the rest)
    softmax_bits      softmax output: unsigned, zero point 0, fixed scale 2^-(softmax_bits-1)
    output_bits       bits of the model output (logits)
    nonlinear         "integer" (default): softmax and LayerNorm run the integer operators that the lowering
                      uses, with straight-through gradients, so QAT and `acc` see the deployed arithmetic;
                      "float": float softmax/LayerNorm on quantized inputs (the integer model then differs)
    softmax_impl      integer softmax: "table" (default; exp table, within 2^-16 of float softmax) or
                      "shiftmax" (I-ViT's shift-and-add exp, no table)
    gelu_impl         integer GELU: "table" (default; T[q] = round(gelu(S·(q − z))/S_out) + z_out, exact) or
                      "shiftgelu" (I-ViT's x·σ(1.702x) with shift-and-add exponentials, no table)
    keep_float        module paths explicitly kept in float (such a model cannot be lowered to integers)
    overrides         per-layer specs (mixed precision)
    """

    weight: QuantSpec = field(default_factory=default_weight_spec)
    act: QuantSpec = field(default_factory=default_act_spec)
    other_bits: int = 8
    first_last_bits: int | None = 8
    softmax_bits: int = 8
    output_bits: int = 16
    nonlinear: str = "integer"
    softmax_impl: str = "table"
    gelu_impl: str = "table"
    keep_float: tuple[str, ...] = ()
    overrides: tuple[LayerOverride, ...] = ()

    def __post_init__(self) -> None:
        for name in ("other_bits", "softmax_bits", "output_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_BITS:
                raise ConfigError(f"{name} must be an integer in 2..{MAX_BITS}, got {value!r}")
        if self.other_bits < self.act.bits:
            object.__setattr__(self, "other_bits", self.act.bits)
        if self.first_last_bits is not None and (
            isinstance(self.first_last_bits, bool) or not 1 <= int(self.first_last_bits) <= MAX_BITS
        ):
            raise ConfigError(f"first_last_bits must be None or in 1..{MAX_BITS}, got {self.first_last_bits!r}")
        if self.nonlinear not in ("float", "integer"):
            raise ConfigError(f"nonlinear must be 'float' or 'integer', got {self.nonlinear!r}")
        if self.softmax_impl not in SOFTMAX_IMPLS:
            raise ConfigError(f"softmax_impl must be one of {', '.join(SOFTMAX_IMPLS)}, got {self.softmax_impl!r}")
        if self.gelu_impl not in GELU_IMPLS:
            raise ConfigError(f"gelu_impl must be one of {', '.join(GELU_IMPLS)}, got {self.gelu_impl!r}")
        if self.weight.granularity == "token":
            raise ConfigError("weight.granularity 'token' is for activations; use 'tensor', 'channel' or 'group'")
        if self.act.granularity in ("channel", "group"):
            raise ConfigError(
                f"act.granularity {self.act.granularity!r}: per-channel activation scales vary along the axis a "
                "conv/linear reduces over and cannot be requantized; use 'tensor' or 'token'"
            )
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        object.__setattr__(self, "overrides", tuple(self.overrides))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": CONFIG_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, QuantSpec):
                value = value.to_dict()
            elif f.name == "overrides":
                value = [
                    {"path": o.path, "weight": o.weight.to_dict() if o.weight else None,
                     "act": o.act.to_dict() if o.act else None}
                    for o in value
                ]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "quant") -> QuantConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"{where}.version {version!r} is not supported (expected {CONFIG_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        if "weight" in data:
            w = dict(data.pop("weight"))
            base = default_weight_spec(int(w.get("bits", 8)), str(w.get("quantizer", "minmax")))
            kwargs["weight"] = QuantSpec.from_dict({**base.to_dict(), **w}, where=f"{where}.weight")
        if "act" in data:
            a = dict(data.pop("act"))
            base = default_act_spec(int(a.get("bits", 8)), str(a.get("quantizer", "minmax")))
            kwargs["act"] = QuantSpec.from_dict({**base.to_dict(), **a}, where=f"{where}.act")
        if "overrides" in data:
            kwargs["overrides"] = tuple(
                LayerOverride.from_dict(o, where=f"{where}.overrides[{i}]") for i, o in enumerate(data.pop("overrides"))
            )
        if "keep_float" in data:
            kwargs["keep_float"] = tuple(data.pop("keep_float"))
        kwargs.update(data)
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _from_dict(cls: type[QuantSpec], data: Mapping[str, Any], where: str) -> QuantSpec:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    values = dict(data)
    if isinstance(values.get("options"), Mapping):
        values["options"] = tuple(sorted(values["options"].items()))
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
