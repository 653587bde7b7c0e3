"""PTQ method "adaround": layer-wise learned rounding of weights (Nagel et al., arXiv 2004.10568).

For each conv/linear with a uniform weight grid, in execution order:
    min_V  ‖W·x − W̃(V)·x̃‖²  +  λ·f_reg(V)
x is the layer's input in the float network, x̃ its input in the quantized network with every earlier
layer already rounded (activations quantized, so later layers correct earlier errors). The weight scale
is first chosen by a clip search (`weight_scale_search`). Budget: `iterations` Adam steps per layer on
mini-batches of `batch_size` calibration samples (default 300 × 32); see rounding.py for h(V) and β.
"""

from __future__ import annotations

import torch

from nnchip.quant.modules import QConv2d, QLinear
from nnchip.quant.ptq.blocks import layer_input, layer_inputs, walk_blocks
from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData, ensure_calibrated, quantization_disabled
from nnchip.quant.ptq.registry import register_ptq_method
from nnchip.quant.ptq.rounding import (
    beta_at,
    learned_rounding,
    reconstruction_loss,
    search_weight_scale,
    supports_adaround,
)
from nnchip.quant.quantize import QModel


@register_ptq_method("adaround")
def adaround(qmodel: QModel, data: CalibrationData, config: PTQConfig) -> None:
    ensure_calibrated(qmodel, data)
    generator = torch.Generator().manual_seed(config.seed)
    chunk = data.eval_batch_size
    for block, block_data in walk_blocks(qmodel, data):
        with quantization_disabled(qmodel):
            float_inputs = layer_inputs(block, block_data.x_fp, chunk)
        for path, layer in block.layers:
            if not supports_adaround(layer):
                continue
            x_q = layer_input(block, layer, block_data.x_q, chunk)
            x_fp = float_inputs[path]
            with torch.no_grad(), quantization_disabled(qmodel):
                target = torch.cat([layer(part) for part in x_fp.split(chunk)])
            optimize_layer_rounding(layer, x_q, target, config, generator)


def optimize_layer_rounding(layer: QConv2d | QLinear, x_q: torch.Tensor, target: torch.Tensor, config: PTQConfig,
                            generator: torch.Generator) -> None:
    """Learn the rounding of `layer` so that layer(x_q) ≈ target; freezes it into the weight."""
    if config.weight_scale_search:
        search_weight_scale(layer.weight_quantizer, layer.weight.detach())
    with learned_rounding([layer]) as (rounding,):
        optimizer = torch.optim.Adam([rounding.V], lr=config.lr)
        for step in range(config.iterations):
            index = torch.randint(0, x_q.shape[0], (min(config.batch_size, x_q.shape[0]),), generator=generator)
            loss = reconstruction_loss(layer(x_q[index]), target[index])
            beta = beta_at(step, config.iterations, config.warmup, config.beta_start, config.beta_end)
            if beta is not None:
                loss = loss + config.reg_weight * rounding.regularizer(beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
