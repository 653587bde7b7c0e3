"""`snap_codebooks(qmodel)`: move every LUT layer's centroids onto its input's integer grid.

The integer model compares quantized inputs with centroids rounded to the input grid
(`clip(round(P / S_x) + z_x, qmin, qmax)`, docs/vq.md); the fake-quant model searches with float centroids.
Snapping replaces P by S_x · (that integer − z_x) and records S_x in the layer, whose eval-mode search then
runs on the integer offsets round(x / S_x) and round(P / S_x) with the integer distance: the fake-quant model
picks exactly the integer model's centroids, ties included. Run it after calibration and again after QAT
(which moves scales; training mode always searches in float).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from nnchip.vq.integer import integer_codebooks
from nnchip.vq.layer import LUTLayer


def _input_quantizer(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    source = node.args[0]
    while isinstance(source, fx.Node) and source.meta.get("nnchip_kind") != "quantize":
        source = next(a for a in source.args if isinstance(a, fx.Node))
    if not isinstance(source, fx.Node):
        raise ValueError(f"{node.target}: the LUT layer's input is not quantized")
    return gm.get_submodule(str(source.target))


@torch.no_grad()
def snap_codebooks(qmodel: nn.Module) -> int:
    """Snap the centroids of every LUT layer of a QModel (its `gm`) to their input grid; returns how many layers."""
    gm: fx.GraphModule = qmodel.gm  # type: ignore[assignment]
    count = 0
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(layer := gm.get_submodule(str(node.target)), LUTLayer):
            continue
        quantizer = _input_quantizer(gm, node)
        scale, zero_point = float(quantizer.get_scale()), int(quantizer.get_zero_point())
        spec = quantizer.grid.spec
        codes = integer_codebooks(layer.codebooks, scale, zero_point, spec.qmin, spec.qmax)
        layer.codebooks.copy_(((codes - zero_point).double() * scale).to(layer.codebooks.dtype))
        layer.grid_scale.fill_(scale)
        count += 1
    return count
