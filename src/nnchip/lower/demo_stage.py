"""The demo's integer stage: lower a row's QModel, export it with golden vectors, verify it with the
pure-numpy reader, and measure the integer model's top-1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nnchip.export import export, verify
from nnchip.lower.interpreter import run
from nnchip.lower.lowering import lower
from nnchip.quant.quantize import QModel

GOLDEN_SAMPLES = 8


def integer_inputs(qmodel: QModel, graph_input: str, x: Tensor) -> Tensor:
    """The integer input of the lowered model: the model's input quantizer applied to real images."""
    return qmodel.gm.get_submodule(graph_input).int_values(x).to(torch.int64)


def lower_export_verify(qmodel: QModel, calib_inputs: Tensor, test_inputs: Tensor, test_labels: Tensor,
                        out_dir: str | Path, formats: tuple[str, ...] = ("npy", "bin", "hex")) -> dict[str, Any]:
    """Returns {"int_acc", "bit_exact", "export_dir", "tensors_verified"}; writes out_dir atomically."""
    del calib_inputs  # the QModel is already calibrated; the integer model needs no data to be built
    graph = lower(qmodel)
    x_int = integer_inputs(qmodel, graph.inputs[0], test_inputs)
    logits = run(graph, x_int).tensors[graph.outputs[0]]
    int_acc = float((logits.argmax(dim=-1) == test_labels).float().mean())
    directory = export(graph, out_dir, formats=formats, golden_inputs=x_int[:GOLDEN_SAMPLES])
    report = verify(directory)
    bit_exact = all(matched == total for matched, total in report.values())
    return {"int_acc": int_acc, "bit_exact": bit_exact, "export_dir": str(directory),
            "tensors_verified": len(report)}
