"""The one base class of every quantizer: a real tensor onto scale · (integer grid value − zero point).

A quantizer is an nn.Module placed in the graph (activations) or inside a Q-layer (weights). Subclasses
override `fake_quant` (the differentiable forward) and, for non-uniform value sets, `grid`; most reuse
the uniform affine grid of this class. Everything downstream (lowering, export) reads only:

    grid                 IntGrid: integer values the codes stand for, their range and storage encoding
    get_scale(), get_zero_point()
                         tensors broadcastable to the input (the zero point is integer-valued)
    int_values(x)        the integers q with x̂ = get_scale() · (q − get_zero_point())

Lifecycle: `calibrating = True` → each forward feeds the observer and passes x through unchanged;
`finish_calibration()` → `initialize_from_range(lo, hi)`; weights initialise from the weight itself on
first use. `enabled = False` makes the quantizer an identity (progressive quantization, QDrop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nnchip.core.intspec import Encoding, IntSpec
from nnchip.core.qmath import fake_quantize_affine, quantize_affine, range_to_scale_zero_point
from nnchip.quant.registry import OBSERVERS
from nnchip.quant.spec import QuantSpec


@dataclass(frozen=True)
class IntGrid:
    """Integer values a quantizer produces: within [qmin, qmax]; `values` lists them if not all are used."""

    spec: IntSpec  # storage type of the integer values (bits, signed, narrow)
    encoding: Encoding = Encoding.TWOS_COMPLEMENT
    values: tuple[int, ...] | None = None  # None: every integer in [qmin, qmax]
    code_bits: int | None = None  # bits of the stored code when it differs from spec.bits (e.g. PoT)

    @property
    def qmin(self) -> int:
        return min(self.values) if self.values is not None else self.spec.qmin

    @property
    def qmax(self) -> int:
        return max(self.values) if self.values is not None else self.spec.qmax

    @property
    def storage_bits(self) -> int:
        return self.code_bits or self.spec.bits


class Quantizer(nn.Module):
    """Uniform affine fake-quantizer with static scale/zero point; subclasses change how they are learned."""

    nnchip_leaf = True
    nnchip_kind = "quantize"

    def __init__(self, spec: QuantSpec, *, role: str, channel_axis: int | None = None, channels: int = 1,
                 ndim: int = 1) -> None:
        """`role` is "weight" or "act"; with `channel_axis`, scales are per index of that axis of an
        `ndim`-dimensional tensor with `channels` entries there (or groups of them)."""
        super().__init__()
        self.spec = spec
        self.role = role
        self.channel_axis = channel_axis
        self.calibrating = False
        self.enabled = True
        shape = [1] * ndim if channel_axis is not None else []
        if channel_axis is not None:
            shape[channel_axis] = channels
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("zero_point", torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # Python mirror of `initialized` once it is True (no tensor read per forward)
        observer_options = {k: v for k, v in spec.options if k in OBSERVER_OPTION_NAMES}
        self.observer = OBSERVERS.get(spec.observer)(channel_axis=channel_axis, **observer_options)

    # ---- the integer grid -------------------------------------------------------------------------
    @property
    def int_spec(self) -> IntSpec:
        signed = True if self.role == "weight" else self.spec.signed
        return IntSpec(self.spec.bits, signed=signed, narrow=self.spec.narrow and signed)

    @property
    def grid(self) -> IntGrid:
        return IntGrid(self.int_spec)

    @property
    def symmetric(self) -> bool:
        return self.role == "weight" or self.spec.symmetric

    # ---- initialisation ---------------------------------------------------------------------------
    def initialize_from_range(self, lo: Tensor, hi: Tensor) -> None:
        grid = self.grid
        if self.spec.granularity == "group" and self.channel_axis is not None:
            lo, hi = _group_reduce(lo, self.channel_axis, self.spec.group_size or 1)
            hi = _group_reduce(hi, self.channel_axis, self.spec.group_size or 1)[1]
        scale, zero_point = range_to_scale_zero_point(lo, hi, grid.qmin, grid.qmax, symmetric=self.symmetric)
        self.set_params(scale, zero_point)

    def initialize_from_tensor(self, x: Tensor) -> None:
        """Initialise from one tensor (weights): the observer's range rule applied to x alone."""
        self.observer.count.zero_()
        self.observer(x.detach())
        self.initialize_from_range(*self.observer.range_for(self.grid, self.symmetric))

    def set_params(self, scale: Tensor, zero_point: Tensor) -> None:
        with torch.no_grad():
            self.scale.data = scale.detach().reshape(self.scale.shape).to(self.scale.dtype).clone()
            self.zero_point.data = torch.round(zero_point.detach()).reshape(self.zero_point.shape).clone()
            self.initialized.fill_(True)
        self._ready = True

    def finish_calibration(self) -> None:
        self.initialize_from_range(*self.observer.range_for(self.grid, self.symmetric))
        self.calibrating = False

    # ---- forward ----------------------------------------------------------------------------------
    def get_scale(self) -> Tensor:
        """The scale used in the forward (subclasses with learned steps return their parameter)."""
        return self.scale

    def get_zero_point(self) -> Tensor:
        return self.zero_point

    def fake_quant(self, x: Tensor) -> Tensor:
        grid = self.grid
        return fake_quantize_affine(x, self.get_scale(), self.get_zero_point(), grid.qmin, grid.qmax)

    def forward(self, x: Tensor) -> Tensor:
        if self.calibrating:
            self.observer(x.detach())
            return x
        if not self.enabled:
            return x
        if not self.is_ready():
            self.initialize_from_tensor(x)
        return self.fake_quant(x)

    def is_ready(self) -> bool:
        """Scale and zero point are set (`initialized`), read from a Python flag once true so that a compiled
        forward has no data-dependent branch; loading a state dict re-reads the buffer."""
        if not self._ready:
            self._ready = bool(self.initialized)
        return self._ready

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = False

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        """Integers q (float tensor of integer values) with fake_quant(x) == scale · (q − zero_point)."""
        grid = self.grid
        return quantize_affine(x, self.get_scale(), self.get_zero_point(), grid.qmin, grid.qmax)

    def extra_repr(self) -> str:
        return f"role={self.role}, bits={self.spec.bits}, quantizer={self.spec.quantizer}"


def _group_reduce(values: Tensor, axis: int, group: int) -> tuple[Tensor, Tensor]:
    """(min, max) over consecutive groups of `group` entries along `axis`, repeated back to full length."""
    moved = values.movedim(axis, 0)
    grouped = moved.reshape(moved.shape[0] // group, group, *moved.shape[1:])
    lo = grouped.min(dim=1).values.repeat_interleave(group, dim=0).movedim(0, axis)
    hi = grouped.max(dim=1).values.repeat_interleave(group, dim=0).movedim(0, axis)
    return lo, hi


OBSERVER_OPTION_NAMES = frozenset({"percentile", "momentum", "norm", "candidates", "bins"})
