"""Integer softmax and LayerNorm in the fake-quant forward (QuantConfig.nonlinear = "integer").

Each module reads its input's integer values from the quantizer that produced them (and any positive
`scale` nodes in between), runs the contract's integer operator (`nnchip.core.int_nonlinear`) and returns
real values, with the float function's gradient (straight-through), so QAT trains against exactly the
arithmetic that the integer model performs. The default GELU needs no module: its contract form is a table
T[q] = round(gelu(S·(q − z)) / S_out) + z_out, which is exactly float GELU followed by the output quantizer;
ShiftGELU (gelu_impl = "shiftgelu") has one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from nnchip.core.errors import ConfigError
from nnchip.core.int_nonlinear import (
    SHIFT_GELU_SIGMA_BITS,
    exp_shift_x0,
    int_layernorm_core,
    layernorm_output_scale,
    shift_gelu,
    shift_gelu_x0,
    shiftmax,
    softmax_exp_table,
)
from nnchip.core.int_nonlinear_float import int_layernorm_core_float, layernorm_float_is_exact, table_softmax_float
from nnchip.core.op_kinds import LAYOUT_KINDS, scale_factor
from nnchip.quant.base import Quantizer
from nnchip.quant.quantizers.fixed import FixedQuantizer


class _IntegerInput(nn.Module):
    """Knows the quantizer (not a child module: it stays where it is in the graph) and real factor of its input."""

    nnchip_leaf = True

    def __init__(self, source: Quantizer, factor: float) -> None:
        nn.Module.__init__(self)
        object.__setattr__(self, "_source", source)
        self.factor = factor
        if source.get_scale().numel() != 1:
            raise ConfigError("nonlinear 'integer' needs a per-tensor scale on the input of softmax/GELU/LayerNorm")

    def active(self) -> bool:
        """False while the source quantizer calibrates or is disabled: the float function runs instead."""
        source = self._source
        return source.enabled and not source.calibrating and source.is_ready()

    def input_scale(self) -> float:
        return float(self._source.get_scale().detach()) * self.factor

    def integers(self, x: Tensor) -> tuple[Tensor, float]:
        """(x/S rounded, as int64 — the input minus its zero point — and S)."""
        codes, scale = self.integer_values(x)
        return codes.to(torch.int64), scale

    def integer_values(self, x: Tensor) -> tuple[Tensor, float]:
        """(x/S rounded, in x's float dtype — exact integers on the input grid — and S)."""
        scale = self.input_scale()
        return (x.detach() / scale).round_(), scale

    def codes(self, x: Tensor) -> Tensor:
        """x/S rounded, in x's float dtype (`integer_values` without S). While compiling, S stays a tensor, so
        the graph does not break for a host read: the same float64 product S, and a float32 x divided by a
        0-dimensional S computes in float32 either way."""
        if torch.compiler.is_compiling():
            scale = (self._source.get_scale().detach().double() * self.factor).reshape(())
            return (x.detach() / scale).round_()
        return self.integer_values(x)[0]

    def code_span(self) -> int:
        """qmax − qmin of the input grid: the widest spread of the integers."""
        spec = self._source.grid.spec
        return spec.qmax - spec.qmin


class IntegerSoftmax(_IntegerInput):
    nnchip_kind = "softmax"

    def __init__(self, source: Quantizer, factor: float, dim: int, out_bits: int, impl: str = "table") -> None:
        super().__init__(source, factor)
        self.dim, self.out_bits, self.impl = dim, out_bits, impl

    def forward(self, x: Tensor) -> Tensor:
        if not self.active():
            return torch.softmax(x, dim=self.dim)
        return _SoftmaxStraightThrough.apply(x, self.dim, self.integer_softmax)

    def integer_softmax(self, x: Tensor) -> Tensor:
        """The contract's integer softmax of x's codes, as real values on the output grid 2^(1−out_bits)."""
        if self.impl == "table":
            q, scale = self.integer_values(x)
            table = softmax_exp_table(scale, self.code_span())
            y = table_softmax_float(q, table, out_bits=self.out_bits, dim=self.dim)
        else:
            q, scale = self.integers(x)
            y = shiftmax(q, exp_shift_x0(scale), out_bits=self.out_bits, dim=self.dim)
        return y.to(x.dtype).mul_(2.0 ** (1 - self.out_bits))

    def output_on_grid(self, scale: float, qmin: int, qmax: int) -> bool:
        """True while the forward returns integers in [qmin, qmax] times `scale` exactly (active, same grid):
        the fake-quantizer that follows it is then the identity in value and gradient."""
        return self.active() and scale == 2.0 ** (1 - self.out_bits) and qmin <= 0 and qmax >= 1 << (self.out_bits - 1)


class _SoftmaxStraightThrough(torch.autograd.Function):
    """Value: `integer(x)`, exactly; gradient: the float softmax's (straight-through), from its saved output."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, integer: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        probs = torch.softmax(x, dim=dim)
        ctx.dim = dim
        ctx.save_for_backward(probs)
        return integer(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (probs,) = ctx.saved_tensors
        return torch._softmax_backward_data(grad, probs, ctx.dim, probs.dtype), None, None


class IntegerGELU(_IntegerInput):
    """ShiftGELU (QuantConfig.gelu_impl = "shiftgelu"): y = x·σ(1.702x) in integers, σ on a 2^-15 grid."""

    nnchip_kind = "gelu"

    def forward(self, x: Tensor) -> Tensor:
        reference = F.gelu(x)
        if not self.active():
            return reference
        q, scale = self.integers(x)
        y = shift_gelu(q, shift_gelu_x0(scale), out_bits=SHIFT_GELU_SIGMA_BITS).to(x.dtype)
        y = y * (scale * 2.0 ** (1 - SHIFT_GELU_SIGMA_BITS))
        return reference + (y - reference).detach()


class IntegerLayerNorm(nn.LayerNorm):
    """nn.LayerNorm whose normalisation is the contract's integer one (exact isqrt); γ, β stay real and
    trainable (the lowering folds them into the per-channel requantization)."""

    nnchip_leaf = True
    nnchip_kind = "layernorm"

    def __init__(self, source: Quantizer, factor: float, norm: nn.LayerNorm, sqrt_mode: str = "exact") -> None:
        if len(norm.normalized_shape) != 1:
            raise ConfigError("nonlinear 'integer' supports LayerNorm over the last axis only")
        super().__init__(norm.normalized_shape, norm.eps, norm.elementwise_affine, bias=norm.bias is not None)
        if norm.weight is not None:
            self.weight.data.copy_(norm.weight.detach())
        if norm.bias is not None:
            self.bias.data.copy_(norm.bias.detach())
        self.input = _IntegerInput(source, factor)
        self.sqrt_mode = sqrt_mode

    def forward(self, x: Tensor) -> Tensor:
        reference = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        if self.input.active():
            if self.sqrt_mode == "exact" and layernorm_float_is_exact(x.shape[-1], self.input.code_span()):
                normalised = int_layernorm_core_float(self.input.codes(x)).to(x.dtype)
            else:
                q, _ = self.input.integers(x)
                normalised = int_layernorm_core(q, sqrt_mode=self.sqrt_mode).to(x.dtype)
            # value: the integer normalisation; gradient: the float one's (straight-through), in place
            out = reference.add_(normalised.mul_(layernorm_output_scale(x.shape[-1])).sub_(reference.detach()))
        else:
            out = reference
        if self.weight is not None:
            out = out * self.weight
        return out.add_(self.bias) if self.bias is not None else out


def _quantized_source(gm: fx.GraphModule, node: fx.Node) -> tuple[Quantizer, float]:
    factor, current = 1.0, node
    while True:
        kind = current.meta.get("nnchip_kind")
        if kind == "quantize":
            return gm.get_submodule(str(current.target)), factor
        if kind == "scale":
            factor *= scale_factor(current)
        elif kind not in LAYOUT_KINDS and kind != "maxpool2d":
            raise ConfigError(f"nonlinear 'integer': the input of {node.name} is not a quantized tensor")
        current = next(a for a in current.args if isinstance(a, fx.Node))


def use_integer_nonlinear(gm: fx.GraphModule, softmax_bits: int, softmax_impl: str = "table",
                          gelu_impl: str = "table") -> None:
    """Replace softmax and LayerNorm nodes (and GELU for ShiftGELU) by their integer-arithmetic modules."""
    kinds = ("softmax", "layernorm", "gelu") if gelu_impl == "shiftgelu" else ("softmax", "layernorm")
    for node in list(gm.graph.nodes):
        kind = node.meta.get("nnchip_kind")
        if kind not in kinds:
            continue
        source, factor = _quantized_source(gm, node.args[0])
        module: nn.Module
        if kind == "softmax":
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            if node.op == "call_module":
                dim = gm.get_submodule(str(node.target)).dim
            module = IntegerSoftmax(source, factor, int(dim if dim is not None else -1), softmax_bits, softmax_impl)
        elif kind == "gelu":
            module = IntegerGELU(source, factor)
        else:
            if node.op != "call_module":
                raise ConfigError(f"nonlinear 'integer': functional layer_norm at {node.name} is not supported")
            module = IntegerLayerNorm(source, factor, gm.get_submodule(str(node.target)))
        name = f"{node.name}_int"
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            replacement = gm.graph.call_module(name, (node.args[0],))
        replacement.meta.update(node.meta)
        node.replace_all_uses_with(replacement)
        gm.graph.erase_node(node)
        if isinstance(module, IntegerSoftmax):
            for user in replacement.users:
                if user.op == "call_module" and isinstance(q := gm.get_submodule(str(user.target)), FixedQuantizer):
                    q.link_grid_source(module)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
