"""The exactness contract: deploy forward (quant/), interpreter (lower/) and the export's numpy reader agree
on every observable tensor, 0 LSB apart; and the three implementations stay independent (import rules)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lowering_cases import PRECISIONS, lowered
from models_for_tests import randomize_batchnorm

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.intspec import esb_magnitudes, sp2_magnitudes
from nnchip.export import export, load_export
from nnchip.lower import lower, run
from nnchip.lower.intgraph import INTEGER_DTYPES
from nnchip.models import build
from nnchip.quant import QuantSpec
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


# Every zoo entry at small input shapes (deit_small/deit_base are deit_tiny's code at larger widths; their
# IntGraphs are walked in test_every_zoo_intgraph_is_integer).
ZOO_SHAPES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "cnn_tiny": ({"in_channels": 1, "image_size": 8}, (4, 1, 8, 8)),
    "resnet20": ({}, (2, 3, 32, 32)),
    "resnet56": ({}, (1, 3, 32, 32)),
    "resnet18": ({"image_size": 32}, (1, 3, 32, 32)),
    "mobilenetv2": ({"image_size": 32}, (1, 3, 32, 32)),
    "vgg_small": ({}, (1, 3, 32, 32)),
    "vit_tiny": ({"in_channels": 1, "image_size": 8}, (4, 1, 8, 8)),
    "deit_tiny": ({"image_size": 32, "patch": 16}, (2, 3, 32, 32)),
}


def zoo_case(name: str, precision: str, options: dict, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = randomize_batchnorm(build(name, **options)).eval()
    x = torch.randn(*shape)
    qmodel = calibrate(quantize(model, PRECISIONS[precision], example_inputs=x[:1]), [x])
    graph = lower(qmodel)
    return qmodel, graph, qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)


@pytest.mark.parametrize("precision", ["w8a8", "w4a4", "w2a2", "w1a8"])
@pytest.mark.parametrize("name", sorted(ZOO_SHAPES))
def test_zoo_models_agree(name: str, precision: str, tmp_path: Path) -> None:
    qmodel, graph, x_int = zoo_case(name, precision, *ZOO_SHAPES[name])
    assert_three_way(qmodel, graph, x_int, tmp_path)


@pytest.mark.parametrize("name", [*sorted(ZOO_SHAPES), "deit_small", "deit_base"])
def test_every_zoo_intgraph_is_integer(name: str) -> None:
    options, shape = ZOO_SHAPES.get(name, ({"image_size": 32, "patch": 16}, (1, 3, 32, 32)))
    _, graph, _ = zoo_case(name, "w8a8", options, shape)
    for node in graph.nodes:
        for key, value in node.params.items():
            assert isinstance(value, np.ndarray) and value.dtype in INTEGER_DTYPES, f"{node.name}.{key}"
        for key, value in node.attrs.items():
            assert not isinstance(value, float), f"{node.name}.{key} is a float"
    for name_, tensor in graph.tensors.items():
        assert tensor.spec.bits <= 16, name_


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


@pytest.mark.parametrize("changes", [{"nonlinear": "float"}, {"softmax_impl": "shiftmax"}, {"gelu_impl": "shiftgelu"},
                                     {"nonlinear": "float", "gelu_impl": "shiftgelu"}],
                         ids=["float-nonlinear", "shiftmax", "shiftgelu", "shiftgelu-float-forward"])
def test_vit_with_non_default_nonlinear_choices_agrees(changes: dict, tmp_path: Path) -> None:
    qmodel, graph, _, x_int = lowered("vit", "w4a4", **changes)
    softmax = next(n for n in graph.nodes if n.op == "softmax")
    assert softmax.attrs["mode"] == changes.get("softmax_impl", "table")
    assert any(n.op == ("shift_gelu" if "gelu_impl" in changes else "lut") for n in graph.nodes)
    assert_three_way(qmodel, graph, x_int[:8], tmp_path)


class ElementwiseNet(torch.nn.Module):
    """Every elementwise activation the lowering turns into a table."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.acts = torch.nn.ModuleList([torch.nn.SiLU(), torch.nn.Hardswish(), torch.nn.Sigmoid(), torch.nn.Tanh(),
                                         torch.nn.GELU(approximate="tanh")])
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        for act in self.acts:
            x = act(x)
        return self.head(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("precision", ["w8a8", "w4a4"])
def test_elementwise_activations_lower_to_exact_tables(precision: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, x = ElementwiseNet().eval(), torch.randn(16, 3, 8, 8)
    qmodel = calibrate(quantize(model, PRECISIONS[precision], example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    assert sorted(n.attrs["function"] for n in graph.nodes if n.op == "lut") == [
        "gelu", "hardswish", "sigmoid", "silu", "tanh"]
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    assert_three_way(qmodel, graph, x_int, tmp_path)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_esb_weights_lower_exactly_and_export_their_codes(kind: str, tmp_path: Path) -> None:
    esb = QuantSpec(bits=4, quantizer="esb", granularity="channel", options=(("significant_bits", 2),))
    qmodel, graph, _, x_int = lowered(kind, "w4a4", weight=esb)
    assert_three_way(qmodel, graph, x_int[:8], tmp_path)
    root = export(graph, tmp_path / "codes", formats=("npy", "bin", "hex", "coe", "mif", "h"))
    manifest = json.loads((root / "manifest.json").read_text())
    node = next(n for n in manifest["nodes"]
                if n["attrs"].get("weight_encoding") == "esb" and n["attrs"]["weight_bits"] == 4)
    assert node["attrs"]["weight_mantissa_bits"] == 1  # the edge layers are 8-bit ESB
    values = np.load(root / node["params"]["weight"]["npy"])
    packed = np.frombuffer((root / node["params"]["weight"]["bin"]).read_bytes(), np.uint8)
    bits = np.unpackbits(packed, bitorder="little")[: values.size * 4].reshape(-1, 4)
    codes = (bits * (1 << np.arange(4))).sum(axis=1)  # sign | E (2 bits) | M (1 bit)
    magnitudes = np.array(esb_magnitudes(2, 1))[codes & 0b111]
    assert np.array_equal(np.where(codes >> 3, -magnitudes, magnitudes), values.ravel())
    model = load_export(root)
    for fmt in ("bin", "hex", "coe", "mif", "h"):
        assert np.array_equal(model.read_param(node["name"], "weight", fmt), values), fmt


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_row_mixed_weights_lower_exactly_and_pack_each_row_at_its_width(kind: str, tmp_path: Path) -> None:
    spec = QuantSpec(bits=4, quantizer="row_mixed", granularity="channel",
                     options=(("high_ratio", 0.25), ("sp2_ratio", 0.25)))
    qmodel, graph, _, x_int = lowered(kind, "w4a4", weight=spec)
    assert_three_way(qmodel, graph, x_int[:8], tmp_path)
    root = export(graph, tmp_path / "rows", formats=("npy", "bin", "hex"))
    manifest = json.loads((root / "manifest.json").read_text())
    for node in (n for n in manifest["nodes"] if n["attrs"].get("weight_encoding") == "row_mixed"):
        entry = node["params"]["weight"]
        values = np.load(root / entry["npy"])
        row_format = np.load(root / node["params"]["row_format"]["npy"])
        widths = [node["attrs"]["row_formats"][f]["bits"] for f in row_format]
        assert entry["row_bits"] == widths
        per_row = values[0].size
        assert (root / entry["bin"]).stat().st_size == -(-sum(widths) * per_row // 8)  # exact bit widths
        stream = np.unpackbits(np.frombuffer((root / entry["bin"]).read_bytes(), np.uint8), bitorder="little")
        offset = 0
        for row, (bits, f) in enumerate(zip(widths, row_format, strict=True)):
            chunk = stream[offset:offset + bits * per_row].reshape(per_row, bits)
            codes = (chunk.astype(np.int64) << np.arange(bits)).sum(axis=1)
            offset += bits * per_row
            if node["attrs"]["row_formats"][f]["scheme"] == "sp2":
                decoded = np.array(sp2_magnitudes(bits))[codes & ((1 << (bits - 1)) - 1)]
                decoded = np.where(codes >> (bits - 1), -decoded, decoded)
            else:
                decoded = np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)
            assert np.array_equal(decoded, values[row].ravel()), (node["name"], row)
        for fmt in ("bin", "hex"):
            assert np.array_equal(load_export(root).read_param(node["name"], "weight", fmt), values), fmt


def test_timm_style_attention_with_traced_sizes_agrees(tmp_path: Path) -> None:
    """qkv → reshape(b, t, 3, heads, c // heads) → unbind → F.scaled_dot_product_attention: the traced sizes
    other than the batch become constants, and any batch size runs."""
    from models_for_tests import SDPAAttention

    torch.manual_seed(0)
    model, x = SDPAAttention().eval(), torch.randn(6, 5, 16)
    qmodel = calibrate(quantize(model, QuantConfig(), example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    reshape = next(n for n in graph.nodes if n.op == "layout" and n.attrs["fn"] == "reshape")
    assert reshape.attrs["args"] == ["batch", 5, 3, 2, 8]
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    assert_three_way(qmodel, graph, x_int[:3], tmp_path)
