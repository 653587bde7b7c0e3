"""Integer softmax, GELU and LayerNorm in the fake-quant forward (QuantConfig.nonlinear = "integer").

Each module reads its input's integer values from the quantizer that produced them (and any positive
`scale` nodes in between), runs the contract's integer operator (`nnchip.core.int_nonlinear`) and returns
real values, with the float function's gradient (straight-through), so QAT trains against exactly the
arithmetic that the integer model performs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from nnchip.core.errors import ConfigError
from nnchip.core.int_nonlinear import (
    exp_shift_x0,
    int_layernorm_core,
    layernorm_output_scale,
    shift_gelu,
    shiftmax,
)
from nnchip.core.op_kinds import LAYOUT_KINDS, scale_factor
from nnchip.quant.base import Quantizer

GELU_SIGMOID_FACTOR = 1.702


class _IntegerInput(nn.Module):
    """Knows the quantizer (not a child module: it stays where it is in the graph) and real factor of its input."""

    nnchip_leaf = True

    def __init__(self, source: Quantizer, factor: float) -> None:
        super().__init__()
        object.__setattr__(self, "_source", source)
        self.factor = factor
        if source.get_scale().numel() != 1:
            raise ConfigError("nonlinear 'integer' needs a per-tensor scale on the input of softmax/GELU/LayerNorm")

    def input_scale(self) -> float:
        return float(self._source.get_scale().detach()) * self.factor

    def integers(self, x: Tensor) -> tuple[Tensor, float]:
        """(x/S rounded, as int64 — the input minus its zero point — and S)."""
        scale = self.input_scale()
        return torch.round(x.detach() / scale).to(torch.int64), scale


class IntegerSoftmax(_IntegerInput):
    nnchip_kind = "softmax"

    def __init__(self, source: Quantizer, factor: float, dim: int, out_bits: int) -> None:
        super().__init__(source, factor)
        self.dim, self.out_bits = dim, out_bits

    def forward(self, x: Tensor) -> Tensor:
        q, scale = self.integers(x)
        y = shiftmax(q, exp_shift_x0(scale), out_bits=self.out_bits, dim=self.dim).to(x.dtype)
        y = y * 2.0 ** (1 - self.out_bits)
        reference = torch.softmax(x, dim=self.dim)
        return reference + (y - reference).detach()


class IntegerGELU(_IntegerInput):
    nnchip_kind = "gelu"

    def __init__(self, source: Quantizer, factor: float, out_bits: int = 8) -> None:
        super().__init__(source, factor)
        self.out_bits = out_bits

    def forward(self, x: Tensor) -> Tensor:
        q, scale = self.integers(x)
        x0 = exp_shift_x0(GELU_SIGMOID_FACTOR * scale)
        y = shift_gelu(q, x0, out_bits=self.out_bits).to(x.dtype) * (scale * 2.0 ** (1 - self.out_bits))
        reference = F.gelu(x)
        return reference + (y - reference).detach()


class IntegerLayerNorm(_IntegerInput):
    nnchip_kind = "layernorm"

    def __init__(self, source: Quantizer, factor: float, norm: nn.LayerNorm, sqrt_mode: str = "exact") -> None:
        super().__init__(source, factor)
        if len(norm.normalized_shape) != 1:
            raise ConfigError("nonlinear 'integer' supports LayerNorm over the last axis only")
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone()) if norm.weight is not None else None
        self.bias = nn.Parameter(norm.bias.detach().clone()) if norm.bias is not None else None
        self.sqrt_mode = sqrt_mode

    def forward(self, x: Tensor) -> Tensor:
        q, _ = self.integers(x)
        normalised = int_layernorm_core(q, sqrt_mode=self.sqrt_mode).to(x.dtype)
        normalised = normalised * layernorm_output_scale(x.shape[-1])
        reference = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        out = reference + (normalised - reference).detach()
        if self.weight is not None:
            out = out * self.weight
        return out + self.bias if self.bias is not None else out


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


def use_integer_nonlinear(gm: fx.GraphModule, softmax_bits: int) -> None:
    """Replace softmax, GELU and LayerNorm nodes by their integer-arithmetic modules (in place)."""
    for node in list(gm.graph.nodes):
        kind = node.meta.get("nnchip_kind")
        if kind not in ("softmax", "gelu", "layernorm"):
            continue
        source, factor = _quantized_source(gm, node.args[0])
        module: nn.Module
        if kind == "softmax":
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            if node.op == "call_module":
                dim = gm.get_submodule(str(node.target)).dim
            module = IntegerSoftmax(source, factor, int(dim if dim is not None else -1), softmax_bits)
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
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
