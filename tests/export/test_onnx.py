"""ONNX export: the integer flavour is bit-exact with the interpreter in onnxruntime on every tensor; the QDQ
flavour runs and tracks it; bad input gets one-line errors; importing nnchip needs no onnx."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lowering_cases import lowered

from nnchip.core.errors import ConfigError, UnsupportedError
from nnchip.export import export, load_export
from nnchip.lower import run
from nnchip.quant import default_act_spec, default_weight_spec

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'nnchip[onnx]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'nnchip[onnx]')")
from nnchip.export.onnx_integer import to_onnx_integer  # noqa: E402
from nnchip.export.onnx_qdq import qdq_agreement, real_input, to_onnx_qdq  # noqa: E402

ort.set_default_logger_severity(3)


def _session(model) -> ort.InferenceSession:  # type: ignore[no-untyped-def]
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def assert_every_tensor_exact(graph, x_int: torch.Tensor) -> int:  # type: ignore[no-untyped-def]
    reference = run(graph, x_int).tensors
    names = [n.output for n in graph.nodes if isinstance(reference[n.output], torch.Tensor)]
    produced = _session(to_onnx_integer(graph, names)).run(None, {graph.inputs[0]: x_int.numpy()})
    for name, value in zip(names, produced, strict=True):
        assert value.dtype == np.int64 and np.array_equal(value, reference[name].numpy()), name
    return len(names)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
@pytest.mark.parametrize("precision", ["w8a8", "w4a4"])
def test_integer_onnx_is_bit_exact_on_every_tensor(kind: str, precision: str) -> None:
    _, graph, _, x_int = lowered(kind, precision)
    ops = {n.op for n in graph.nodes}
    assert ops >= ({"conv2d", "add", "maxpool", "mean", "linear", "layout"} if kind == "cnn" else
                   {"conv2d", "concat", "constant", "layernorm", "matmul", "softmax", "lut", "layout"})
    assert assert_every_tensor_exact(graph, x_int[:16]) > 10


@pytest.mark.parametrize(("kind", "changes"), [
    ("cnn", {"act": default_act_spec(16), "other_bits": 16}),  # 16-bit activations: byte-decomposed operands
    ("cnn", {"weight": default_weight_spec(8, "dorefa")}),  # weights up to ±255: byte-decomposed weights
    ("cnn", {"weight": default_weight_spec(4, "pot")}),
    ("vit", {"nonlinear": "float"}),
    ("vit", {"softmax_impl": "shiftmax", "gelu_impl": "shiftgelu"}),  # the table-free I-ViT operators
    ("cnn", {"weight": default_weight_spec(4, "esb")}),
])
def test_integer_onnx_wide_operands_and_encodings(kind: str, changes: dict) -> None:
    _, graph, _, x_int = lowered(kind, "w8a8", **changes)
    assert_every_tensor_exact(graph, x_int[:8])


def test_integer_onnx_ivit_sqrt_and_any_batch() -> None:
    _, graph, _, x_int = lowered("vit", "w8a8")
    for node in graph.nodes:
        if node.op == "layernorm":
            node.attrs["sqrt_mode"] = "ivit"
    assert_every_tensor_exact(graph, x_int[:3])
    assert_every_tensor_exact(graph, x_int[:1])


def test_export_writes_both_onnx_models_listed_with_sha256(tmp_path: Path) -> None:
    _, graph, _, x_int = lowered("cnn", "w4a4")
    root = export(graph, tmp_path / "e", formats=("npy", "onnx", "onnx-qdq"), golden_inputs=x_int[:2])
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["onnx"] == {"onnx": "model.onnx", "onnx-qdq": "model_qdq.onnx"}
    assert {"model.onnx", "model_qdq.onnx"} <= set(manifest["files"])
    load_export(root)  # SHA-256 of every file checks out
    session = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {graph.inputs[0]: x_int[:8].numpy()})[0]
    assert np.array_equal(got, run(graph, x_int[:8]).tensors[graph.outputs[0]].numpy())


@pytest.mark.parametrize(("kind", "floor"), [("cnn", 0.95), ("vit", 0.8)])
def test_qdq_onnx_runs_and_tracks_the_integer_model(kind: str, floor: float) -> None:
    _, graph, _, x_int = lowered(kind, "w8a8")
    reference = run(graph, x_int).tensors[graph.outputs[0]].numpy()
    stats = qdq_agreement(graph, x_int.numpy(), reference)
    assert stats["top1_agreement"] >= floor
    model = to_onnx_qdq(graph)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    got = _session(model).run(None, {graph.inputs[0]: real_input(graph, x_int.numpy())})[0]
    assert got.shape == reference.shape


def test_unsupported_nodes_and_bad_scales_are_named() -> None:
    _, graph, _, _ = lowered("cnn", "w8a8")
    node = next(n for n in graph.nodes if n.op == "conv2d")
    node.attrs["rounding"] = "half_even"
    with pytest.raises(UnsupportedError, match=rf"^node {node.name} \(op conv2d\): rounding 'half_even'"):
        to_onnx_integer(graph)
    node.attrs["rounding"] = "half_up"
    graph.tensors[graph.outputs[0]].scale = float("nan")
    with pytest.raises(ConfigError, match=f"tensor {graph.outputs[0]} has scale nan"):
        to_onnx_qdq(graph)
    to_onnx_integer(graph)  # the integer flavour never reads a real scale
    layout = next(n for n in graph.nodes if n.op == "layout")
    layout.attrs["fn"] = "roll"
    with pytest.raises(UnsupportedError, match=rf"^node {layout.name} \(op layout\): function 'roll'"):
        to_onnx_integer(graph)
    layout.op = "fft"
    with pytest.raises(UnsupportedError, match=rf"^node {layout.name} \(op fft\): no exact ONNX integer"):
        to_onnx_integer(graph)


def test_importing_nnchip_and_exporting_npy_needs_no_onnx(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
        "import nnchip, nnchip.export, nnchip.cli.export, nnchip.export.writer\n"
        "from nnchip.core.errors import ConfigError\n"
        "try:\n"
        "    import nnchip.export.onnx_integer\n"
        "except ConfigError as exc:\n"
        "    assert 'pip install' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without onnx')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_layout_ops_with_batch_reshape_permute_unbind_and_slicing() -> None:
    from nnchip.core.intspec import IntSpec
    from nnchip.lower.intgraph import IntGraph, IntNode, IntTensor

    spec = IntSpec(8)
    shapes = {"x": (2, 6, 8), "r": (2, 6, 2, 4), "p": (2, 2, 4, 6), "u": (), "g0": (2, 4, 6), "g1": (2, 4, 6),
              "a": (2, 4, 6), "s": (2, 4, 3), "o": (2, 12)}
    tensors = {name: IntTensor(name, shape, spec, 0, 0.2 if name in ("a", "s", "o") else 0.1)  # add: y = (g0 + g1) / 2
               for name, shape in shapes.items()}

    def layout(name: str, source: str, fn: str, *args: object) -> IntNode:
        return IntNode(name, "layout", [source], name, {}, {"fn": fn, "args": list(args), "kwargs": {}})

    nodes = [layout("r", "x", "reshape", ["batch", 6, 2, 4]), layout("p", "r", "permute", [2, 0, 3, 1]),
             layout("u", "p", "unbind", 0), layout("g0", "u", "getitem", 0), layout("g1", "u", "getitem", 1),
             IntNode("a", "add", ["g0", "g1"], "a", {"multiplier": np.array([2**30, 2**30]),
                                                     "shift": np.array([31, 31])},
                     {"zero_points": [0, 0], "out_zero_point": 0, "frac_bits": 8, "lo": -128, "hi": 127}),
             layout("s", "a", "getitem", [{"ellipsis": True}, {"slice": [1, None, 2]}]),
             layout("o", "s", "flatten", 1)]
    graph = IntGraph(tensors, nodes, ["x"], ["o"])
    x_int = torch.randint(-128, 128, (5, 6, 8))
    assert assert_every_tensor_exact(graph, x_int) == 7
    qdq = _session(to_onnx_qdq(graph)).run(None, {"x": real_input(graph, x_int.numpy())})[0]
    assert qdq.shape == (5, 12) and np.abs(qdq - run(graph, x_int).tensors["o"].numpy()).max() <= 1
