"""Quantized, calibrated models shared by the lowering, export and exactness tests."""

from __future__ import annotations

import torch
from models_for_tests import TinyResNet, TransformerViT, randomize_batchnorm

from nnchip import QuantConfig, calibrate, quantize
from nnchip.lower import lower
from nnchip.quant import default_act_spec, default_weight_spec

PRECISIONS = {
    "w8a8": QuantConfig(),
    "w4a4": QuantConfig(weight=default_weight_spec(4), act=default_act_spec(4)),
    "w2a2": QuantConfig(weight=default_weight_spec(2), act=default_act_spec(2)),
    "w1a8": QuantConfig(weight=default_weight_spec(1, "binary"), act=default_act_spec(8)),
}


def lowered(kind: str, precision: str, **config_changes: object):
    """(qmodel, graph, float input, integer input) for a CNN or ViT written in the tests."""
    torch.manual_seed(0)
    if kind == "cnn":
        model, x = randomize_batchnorm(TinyResNet()).eval(), torch.randn(48, 3, 16, 16)
    else:
        model, x = TransformerViT().eval(), torch.randn(48, 1, 8, 8)
    config = PRECISIONS[precision]
    if config_changes:
        from dataclasses import replace

        config = replace(config, **config_changes)
    qmodel = calibrate(quantize(model, config, example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    return qmodel, graph, x, x_int
