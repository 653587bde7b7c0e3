"""Lowering: integer-only graphs, agreement with the fake-quant model, errors that name the layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lowering_cases import lowered

from nnchip.core.errors import ConversionError
from nnchip.lower import lower, run
from nnchip.lower.intgraph import INTEGER_DTYPES


@pytest.mark.parametrize("kind", ["cnn", "vit"])
@pytest.mark.parametrize("precision", ["w8a8", "w4a4", "w2a2", "w1a8"])
def test_every_tensor_and_parameter_is_an_integer(kind: str, precision: str) -> None:
    _, graph, _, x_int = lowered(kind, precision)
    for node in graph.nodes:
        for value in node.params.values():
            assert isinstance(value, np.ndarray) and value.dtype in INTEGER_DTYPES
        for key, value in node.attrs.items():
            assert not isinstance(value, float), f"{node.name}.{key} is a float"
    result = run(graph, x_int)
    for name, value in result.tensors.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == torch.int64, name
            spec = graph.tensors[name].spec
            assert int(value.min()) >= spec.qmin and int(value.max()) <= spec.qmax, name


@pytest.mark.parametrize(("kind", "precision", "floor"), [("cnn", "w8a8", 0.98), ("cnn", "w4a4", 0.9),
                                                          ("vit", "w8a8", 0.9), ("vit", "w4a4", 0.8)])
def test_integer_model_tracks_the_fake_quant_model(kind: str, precision: str, floor: float) -> None:
    qmodel, graph, x, x_int = lowered(kind, precision)
    out = graph.tensors[graph.outputs[0]]
    y_int = run(graph, x_int).tensors[graph.outputs[0]]
    with torch.no_grad():
        y_fake = qmodel(x)
    agree = float((y_int.argmax(-1) == y_fake.argmax(-1)).float().mean())
    assert agree >= floor
    if kind == "cnn":  # ViTs differ more: integer softmax/LayerNorm approximate the float ones
        error = float(((y_int - out.zero_point) * out.scale - y_fake).abs().max())
        assert error < 0.1 * float(y_fake.abs().max()) + 0.05


def test_real_scales_are_not_read_by_the_interpreter() -> None:
    _, graph, _, x_int = lowered("cnn", "w8a8")
    reference = run(graph, x_int).tensors[graph.outputs[0]]
    for tensor in graph.tensors.values():
        tensor.scale = float("nan")
    assert torch.equal(run(graph, x_int).tensors[graph.outputs[0]], reference)


def test_accumulator_that_cannot_fit_is_named() -> None:
    qmodel, _, _, _ = lowered("cnn", "w8a8")
    with pytest.raises(ConversionError, match=r"conv1 \(nnchip.quant.modules.QConv2d\): accumulator needs \d+ bits"):
        lower(qmodel, acc_bits=12)


def test_overflow_at_run_time_is_flagged_or_reported() -> None:
    _, graph, _, x_int = lowered("cnn", "w8a8")
    node = next(n for n in graph.nodes if n.op == "conv2d")
    node.attrs["declared_acc_bits"] = 8
    with pytest.raises(ConversionError, match="accumulator outside 8 bits"):
        run(graph, x_int)
    assert run(graph, x_int, overflow="report").overflows


def test_keep_float_cannot_be_lowered() -> None:
    from dataclasses import replace

    qmodel, _, _, _ = lowered("cnn", "w8a8")
    qmodel.config = replace(qmodel.config, keep_float=("fc",))
    with pytest.raises(ConversionError, match="kept in float cannot be lowered.*fc"):
        lower(qmodel)
