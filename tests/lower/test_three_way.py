"""The exactness contract: deploy forward (quant/), interpreter (lower/) and the export's numpy reader agree
on every observable tensor, 0 LSB apart; and the three implementations stay independent (import rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from lowering_cases import lowered

from nnchip import QuantConfig, calibrate, quantize
from nnchip.export import export, load_export
from nnchip.lower import lower, run
from nnchip.models import build
from nnchip.quant.deploy import deploy_forward

SRC = Path(__file__).resolve().parents[2] / "src" / "nnchip"


def assert_three_way(qmodel, graph, x_int: torch.Tensor, tmp_path: Path) -> None:
    interpreted = run(graph, x_int).tensors
    deployed = deploy_forward(qmodel, x_int)
    export(graph, tmp_path / "e")
    read = load_export(tmp_path / "e").run(x_int.numpy())
    assert set(deployed) <= set(interpreted)
    for name, value in deployed.items():
        assert torch.equal(value, interpreted[name]), name
        assert np.array_equal(read[name], value.numpy()), name


@pytest.mark.parametrize("kind", ["cnn", "vit"])
@pytest.mark.parametrize("precision", ["w8a8", "w4a4", "w2a2", "w1a8"])
def test_three_implementations_agree(kind: str, precision: str, tmp_path: Path) -> None:
    qmodel, graph, _, x_int = lowered(kind, precision)
    assert_three_way(qmodel, graph, x_int[:8], tmp_path)


@pytest.mark.parametrize("name", ["resnet20", "vit_tiny", "cnn_tiny"])
def test_zoo_models_agree(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    options = {"in_channels": 1, "image_size": 8} if name != "resnet20" else {}
    model = build(name, **options).eval()
    size = options.get("image_size", 32)
    x = torch.randn(8, options.get("in_channels", 3), size, size)
    qmodel = calibrate(quantize(model, QuantConfig(), example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    assert_three_way(qmodel, graph, x_int, tmp_path)


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_lut_layers_agree(kind: str, metric: str, tmp_path: Path) -> None:
    from models_for_tests import TinyResNet, TransformerViT

    from nnchip.vq import VQConfig, set_mode, vq

    x = torch.randn(32, 1, 8, 8)
    model = (TinyResNet(in_channels=1) if kind == "cnn" else TransformerViT()).eval()
    gm = vq(model, VQConfig(v=4, k=8, metric=metric, table_bits=6), example_inputs=x[:2], calibration=[x])
    set_mode(gm, "hard", quantize_tables=True)
    qmodel = calibrate(quantize(gm, QuantConfig(), example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    assert sum(node.op == "lut_gemm" for node in graph.nodes) == (7 if kind == "cnn" else 12)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x[:8]).to(torch.int64)
    assert_three_way(qmodel, graph, x_int, tmp_path)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_deploy_forward_imports_nothing_from_lower_or_export() -> None:
    names = imported_modules(SRC / "quant" / "deploy.py")
    assert not any(n.startswith(("nnchip.lower", "nnchip.export")) for n in names), names


def test_numpy_reader_imports_only_numpy_and_the_standard_library() -> None:
    names = imported_modules(SRC / "export" / "reader.py")
    assert not any(n.startswith(("torch", "nnchip")) for n in names), names


def test_vit_with_integer_nonlinear_forward_agrees(tmp_path: Path) -> None:
    qmodel, graph, _, x_int = lowered("vit", "w4a4", nonlinear="integer")  # IntegerSoftmax/LayerNorm sources
    assert_three_way(qmodel, graph, x_int[:8], tmp_path)
