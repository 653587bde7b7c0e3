"""Per-layer SQNR of a quantized model against its float model, matched by graph node name.

Both models are captured the same way (`capture` then `fold_batchnorm`, as `quantize` does), so every
conv/linear/matmul node of the QModel has a twin of the same name in the float graph. The output of each
such node is recorded on the same inputs in both graphs and compared: SQNR = 10·log10(Σ f² / Σ (f − q)²).
The error accumulates along the network, so a drop from one layer to the next shows the layer that hurts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from nnchip.core.capture import capture
from nnchip.core.fold_batchnorm import fold_batchnorm
from nnchip.core.qmath import sqnr_db

COMPARED_KINDS = ("conv2d", "linear", "matmul")


@dataclass(frozen=True)
class LayerSQNR:
    node: str  # graph node name (same in the float and the quantized graph)
    kind: str  # conv2d | linear | matmul
    target: str  # module path for conv/linear, the node name otherwise
    sqnr_db: float


class _Recorder(fx.Interpreter):
    """Runs a GraphModule and keeps the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names = names
        self.outputs: dict[str, Tensor] = {}

    def run_node(self, n: fx.Node) -> object:
        result = super().run_node(n)
        if n.name in self.names and isinstance(result, Tensor):
            self.outputs[n.name] = result.detach()
        return result


@torch.no_grad()
def layer_sqnr(float_model: nn.Module, qmodel: nn.Module, inputs: Tensor) -> list[LayerSQNR]:
    """SQNR (dB) of every conv/linear/matmul output of `qmodel` (a QModel) against `float_model`, in graph order."""
    float_gm = capture(float_model, (inputs[:1],)).gm
    fold_batchnorm(float_gm)
    float_gm.eval()
    qgm: fx.GraphModule = qmodel.gm  # type: ignore[assignment]
    was_training = qgm.training
    qgm.eval()
    try:
        layer_nodes = [n for n in qgm.graph.nodes if n.meta.get("nnchip_kind") in COMPARED_KINDS]
        float_names = {n.name for n in float_gm.graph.nodes}
        names = {n.name for n in layer_nodes if n.name in float_names}
        q_rec, f_rec = _Recorder(qgm, names), _Recorder(float_gm, names)
        q_rec.run(inputs)
        f_rec.run(inputs)
    finally:
        qgm.train(was_training)
    results = []
    for node in layer_nodes:
        if node.name in q_rec.outputs and node.name in f_rec.outputs:
            target = str(node.target) if node.op == "call_module" else node.name
            value = sqnr_db(f_rec.outputs[node.name], q_rec.outputs[node.name])
            results.append(LayerSQNR(node.name, node.meta["nnchip_kind"], target, value))
    return results
