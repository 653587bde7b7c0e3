"""Fake-quant layers (Q*): the float layer with a weight quantizer; inputs are quantized by graph nodes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nnchip.quant.base import Quantizer


class QConv2d(nn.Conv2d):
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
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QLinear(nn.Linear):
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
        return F.linear(x, self.quantized_weight(), self.bias)


Q_LAYER_TYPES = (QConv2d, QLinear)
