"""Fake-quant layers (Q*): the float layer with a weight quantizer; inputs are quantized by graph nodes.

The bias is fake-quantized too, onto the accumulator grid that the integer model adds it on:
b̂ = round(b / (s_x·s_w))·s_x·s_w per output channel (rounding through the STE, scales detached), where s_x is
the scale of the activation quantizer feeding the layer (linked by `quantize()`). Without it, the float bias
and the integer bias differ by up to half an accumulator unit, which moves outputs across rounding
boundaries: ~1 % of 4-bit values flip by one code, and a ViT's Q·Kᵀ amplifies those flips.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nnchip.core.qmath import round_ste
from nnchip.quant.base import Quantizer


class AccumulatorBias:
    """Mixin: the bias on the accumulator grid s_x·s_w once the input quantizer is linked and initialised."""

    bias: Tensor | None
    weight_quantizer: nn.Module

    def link_input_quantizer(self, quantizer: Quantizer) -> None:
        """Remember (without registering it as a submodule) the quantizer whose output this layer reads."""
        self.__dict__["_input_quantizer"] = quantizer

    def input_quantizer(self) -> Quantizer | None:
        return self.__dict__.get("_input_quantizer")

    def quantized_bias(self) -> Tensor | None:
        source, weight_q = self.input_quantizer(), self.weight_quantizer
        usable = (
            self.bias is not None and source is not None and source.enabled and not source.calibrating
            and source.is_ready() and source.get_scale().numel() == 1
            and getattr(weight_q, "enabled", True) and not getattr(weight_q, "calibrating", False)
        )
        if not usable:
            return self.bias
        assert self.bias is not None and source is not None
        # a PTQ stand-in for the weight quantizer (AdaRound) carries the same scale as a buffer
        weight_scale = weight_q.get_scale() if isinstance(weight_q, Quantizer) else weight_q.scale
        acc_scale = (source.get_scale().reshape(()) * weight_scale.reshape(-1)).detach()  # (C_out,)
        return round_ste(self.bias / acc_scale) * acc_scale


class QConv2d(AccumulatorBias, nn.Conv2d):
    """nn.Conv2d whose weight passes through `weight_quantizer` (per output channel: axis 0)."""

    nnchip_leaf = True
    nnchip_kind = "conv2d"

    def __init__(self, conv: nn.Conv2d, weight_quantizer: Quantizer) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, conv.bias is not None, conv.padding_mode,
        )
        self.weight.data.copy_(conv.weight.detach())
        if conv.bias is not None:
            self.bias.data.copy_(conv.bias.detach())
        self.weight_quantizer = weight_quantizer

    def quantized_weight(self) -> Tensor:
        return self.weight_quantizer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.quantized_bias())


class QLinear(AccumulatorBias, nn.Linear):
    """nn.Linear whose weight passes through `weight_quantizer` (per output feature: axis 0)."""

    nnchip_leaf = True
    nnchip_kind = "linear"

    def __init__(self, linear: nn.Linear, weight_quantizer: Quantizer) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None)
        self.weight.data.copy_(linear.weight.detach())
        if linear.bias is not None:
            self.bias.data.copy_(linear.bias.detach())
        self.weight_quantizer = weight_quantizer

    def quantized_weight(self) -> Tensor:
        return self.weight_quantizer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.quantized_bias())


Q_LAYER_TYPES = (QConv2d, QLinear)
