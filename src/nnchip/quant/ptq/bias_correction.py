"""PTQ method "bias_correction" (empirical form; Nagel et al., arXiv 1906.04721, §4.2).

Per conv/linear, in execution order, per output channel c:
    b'_c = b_c − ( mean_data(ỹ_c) − mean_data(y_c) )
ỹ = the quantized layer on its input in the quantized network (earlier layers already corrected: the
"sequential" form, so the shift from quantized activations is corrected too), y = the float layer on its
input in the float network; means over the calibration samples and spatial/token positions. A layer
without a bias gets one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.quant.modules import QConv2d, QLinear
from nnchip.quant.ptq.blocks import layer_input, layer_inputs, walk_blocks
from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData, ensure_calibrated, quantization_disabled
from nnchip.quant.ptq.registry import register_ptq_method
from nnchip.quant.quantize import QModel


@register_ptq_method("bias_correction")
def bias_correction(qmodel: QModel, data: CalibrationData, config: PTQConfig) -> None:
    ensure_calibrated(qmodel, data)
    chunk = data.eval_batch_size
    for block, block_data in walk_blocks(qmodel, data):
        with quantization_disabled(qmodel):
            float_inputs = layer_inputs(block, block_data.x_fp, chunk)
        for path, layer in block.layers:
            with quantization_disabled(qmodel):
                mean_fp = _channel_mean(layer, float_inputs[path], chunk)
            mean_q = _channel_mean(layer, layer_input(block, layer, block_data.x_q, chunk), chunk)
            _subtract_from_bias(layer, mean_q - mean_fp)


@torch.no_grad()
def _channel_mean(layer: QConv2d | QLinear, x: Tensor, chunk: int) -> Tensor:
    total: Tensor | None = None
    count = 0
    for part in x.split(chunk):
        y = layer(part)  # conv: (B, C, H, W); linear: (..., C)
        flat = y.transpose(0, 1).reshape(y.shape[1], -1) if isinstance(layer, QConv2d) else y.reshape(-1, y.shape[-1]).T
        total = flat.sum(dim=1) if total is None else total + flat.sum(dim=1)
        count += flat.shape[1]
    assert total is not None
    return total / count


@torch.no_grad()
def _subtract_from_bias(layer: QConv2d | QLinear, shift: Tensor) -> None:
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros_like(shift), requires_grad=layer.weight.requires_grad)
    layer.bias.data -= shift.to(layer.bias.dtype)
