"""vq(): layer selection, LUT forward = table gather, integer distances and tie-breaking, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_for_tests import TinyResNet, TransformerViT
from torch import nn

from nnchip.core.errors import ConfigError, NnchipError, UnsupportedError
from nnchip.export.reader import _vq_encode
from nnchip.lower.intgraph import IntNode
from nnchip.lower.vq_ops import run_vq_encode
from nnchip.models import build
from nnchip.vq import METRICS, LUTLayer, VQConfig, VQTrainConfig, lut_layers, vq
from nnchip.vq.integer import encode_int, gather_accumulate, integer_tables
from nnchip.vq.metrics import SEARCH_BLOCK

X = torch.randn(32, 1, 8, 8)


def converted(model: nn.Module, **options: object) -> torch.fx.GraphModule:
    return vq(model.eval(), VQConfig(**{"v": 4, "k": 8, **options}), example_inputs=X[:2], calibration=[X])


def test_inner_layers_of_a_cnn_become_lut_layers_and_match_their_tables() -> None:
    gm = converted(build("cnn_tiny", in_channels=1, image_size=8))
    names = [name for name, _ in lut_layers(gm)]
    assert names == ["conv2", "conv3"]  # first (conv1) and last (fc) stay exact
    layer = dict(lut_layers(gm))["conv2"]
    x = torch.randn(4, 16, 8, 8)
    rows = layer.rows(x)  # (N, D)
    _, index = layer.encode(layer.groups(rows))  # (C, N)
    tables = layer.tables()  # (C, K, M)
    gathered = tables[torch.arange(layer.num_codebooks)[:, None], index].sum(dim=0) + layer.bias  # (N, M)
    torch.testing.assert_close(layer(x), layer.unrows(gathered, x), rtol=1e-4, atol=1e-4)


def test_all_layers_and_explicit_choices() -> None:
    vit = converted(TransformerViT(), layers="all", metric="chebyshev")
    assert len(lut_layers(vit)) == 2 * 6 + 1 + 1  # q/k/v/out/linear1/linear2 per block, patch embed, head
    resnet = converted(TinyResNet(in_channels=1), include=["layer1.0.conv1", "fc"], exclude=["fc"])
    assert [name for name, _ in lut_layers(resnet)] == ["layer1.0.conv1"]


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
def test_integer_distance_matches_float_distance(metric: str) -> None:
    x = torch.randint(-20, 20, (3, 50, 4))
    codebook = torch.randint(-20, 20, (3, 8, 4))
    exact = METRICS.get(metric).int_distance(x, codebook)
    real = METRICS.get(metric).distance(x.double(), codebook.double())
    torch.testing.assert_close(exact.double(), real**2 if metric == "l2" else real)


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
def test_ties_go_to_the_lowest_index_in_all_three_implementations(metric: str) -> None:
    codebook = torch.tensor([[[4, 4], [0, 0], [2, 2], [0, 0]]])  # (C=1, K=4, v=2): centroids 1 and 3 coincide
    rows = torch.tensor([[1, 1], [0, 0], [3, 3], [1, 0]])  # (N, D=2): ties between 1/2, 1/3, 0/2, 1/3
    node = IntNode("i", "vq_encode", ["x"], "i", {"codebook": codebook.numpy()}, {"layer": "linear", "metric": metric})
    deploy = encode_int(rows, codebook, metric)[:, 0]
    interpreted = run_vq_encode(node, rows)[:, 0]
    read = _vq_encode(rows.numpy(), codebook.numpy(), node.attrs)[:, 0]
    assert torch.equal(deploy, interpreted) and np.array_equal(read, deploy.numpy())
    assert deploy.tolist() == [1, 1, 0, 1]  # the same for every metric on these points


def test_integer_tables_and_gather() -> None:
    weight, codebooks = torch.randn(6, 8), torch.randn(2, 4, 4)
    tables, scales = integer_tables(weight, codebooks, 8, "channel")
    assert tables.abs().max() <= 127 and tables.shape == (2, 4, 6) and scales.shape == (6,)
    index = torch.tensor([[3, 1], [0, 0]])
    assert torch.equal(gather_accumulate(index, tables), torch.stack([tables[0, 3] + tables[1, 1],
                                                                      tables[0, 0] + tables[1, 0]]))


def test_bad_input_is_one_line() -> None:
    model = build("cnn_tiny", in_channels=1, image_size=8)
    with pytest.raises(ConfigError, match=r"vq.v = 5 does not divide the input width D = 144 of conv2"):
        converted(model, v=5)
    with pytest.raises(ConfigError, match="vq.k"):
        VQConfig(k=1)
    with pytest.raises(ConfigError, match="vq.metric: unknown vq metric 'cosine'"):
        VQConfig(metric="cosine")
    with pytest.raises(UnsupportedError, match=r"relu \(torch.nn.modules.activation.ReLU\) cannot become a LUT"):
        converted(model, include=["relu"])
    with pytest.raises(ConfigError, match="vq.include: no module at path 'nope'"):
        converted(model, include=["nope"])
    depthwise = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, groups=4), nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(UnsupportedError, match=r"^vq: 1 \(torch.nn.modules.conv.Conv2d\) has groups=4"):
        converted(depthwise)
    with pytest.raises(ConfigError, match="vq_train.joint_lr"):
        VQTrainConfig(joint_lr=0)
    for error in (ConfigError, UnsupportedError):
        assert issubclass(error, NnchipError)


def test_configs_round_trip() -> None:
    config = VQConfig(v=8, k=32, metric="l1", include=("a",), table_bits=6)
    assert VQConfig.from_dict(config.to_dict()) == config
    train = VQTrainConfig(joint_epochs=3)
    assert VQTrainConfig.from_dict(train.to_dict()) == train
    with pytest.raises(ConfigError, match="unknown field"):
        VQConfig.from_dict({"vv": 4})


def test_lut_layer_is_a_capture_leaf() -> None:
    assert LUTLayer.nnchip_leaf and LUTLayer.nnchip_kind == "vq_lut"


def test_vq_package_stays_independent_of_lower_and_export() -> None:
    """The deploy forward imports nnchip.vq, so nnchip.vq must not reach the interpreter or the reader."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "src" / "nnchip" / "vq"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(n.startswith(("nnchip.lower", "nnchip.export")) for n in names), path.name


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
def test_snapped_codebooks_make_the_fake_quant_search_the_integer_one(metric: str) -> None:
    from nnchip import QuantConfig, calibrate, quantize
    from nnchip.lower import lower, run
    from nnchip.vq import snap_codebooks

    gm = converted(build("cnn_tiny", in_channels=1, image_size=8), metric=metric, k=16)
    qmodel = calibrate(quantize(gm, QuantConfig(), example_inputs=X[:2]), [X])
    assert snap_codebooks(qmodel) == 2
    graph = lower(qmodel)
    tensors = run(graph, qmodel.gm.get_submodule(graph.inputs[0]).int_values(X).to(torch.int64)).tensors
    layers = dict(lut_layers(qmodel.gm))
    for node in (n for n in graph.nodes if n.op == "vq_encode"):
        x = graph.tensors[node.inputs[0]]
        real = (tensors[x.name] - x.zero_point).float() * x.scale  # the fake-quant values of the same integers
        layer = layers[node.attrs["source"].split(" ")[0]]
        index = layer.encode(layer.groups(layer.rows(real)))[1].transpose(0, 1)  # (N, C)
        assert torch.equal(index.reshape(tensors[node.output].shape), tensors[node.output]), node.name


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
def test_search_without_gradient_finds_the_nearest_centroid_of_the_distance(metric: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 500, 4)  # (G, N, v)
    codebook = torch.randn(3, 16, 4)  # (G, K, v)
    strided = torch.randn(500, 3, 4).transpose(0, 1)  # the layer passes a strided view of its rows
    chosen = METRICS.get(metric)
    for points in (x, strided):
        assert torch.equal(chosen.search(points, codebook), chosen.distance(points, codebook).argmin(-1))


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
def test_blocked_search_equals_the_search_over_all_sub_vectors_at_once(metric: str) -> None:
    torch.manual_seed(0)
    n = 2 * SEARCH_BLOCK + 37  # two full blocks and a partial one
    points = torch.randn(n, 3, 4).transpose(0, 1)  # (G, N, v), strided like the layer's rows
    codebook = torch.randn(3, 16, 4)
    chosen = METRICS.get(metric)
    whole = (chosen.fast_search(points, codebook) if chosen.fast_search is not None
             else chosen.distance(points, codebook).argmin(-1))
    assert torch.equal(chosen.search(points, codebook), whole)


def test_nearest_rows_and_their_codebook_gradient_match_a_gather_of_the_centroids() -> None:
    torch.manual_seed(0)
    layer = LUTLayer(nn.Conv2d(8, 16, 3, padding=1), v=4, k=16, metric="l2")
    with torch.no_grad():
        layer.codebooks.normal_()
    index = torch.randint(0, 16, (layer.num_codebooks, 300))  # (C, N)
    upstream = torch.randn(300, layer.in_features)
    rows = layer.nearest(index)  # (N, D)
    (grad,) = torch.autograd.grad(rows, layer.codebooks, upstream)
    book = layer.codebooks.detach().clone().requires_grad_(True)
    gathered = torch.gather(book, 1, index.unsqueeze(-1).expand(-1, -1, 4))  # (C, N, v)
    reference = gathered.transpose(0, 1).reshape(300, layer.in_features)
    (reference_grad,) = torch.autograd.grad(reference, book, upstream)
    assert torch.equal(rows, reference)
    torch.testing.assert_close(grad, reference_grad)


def test_eval_forward_with_quantized_tables_is_the_integer_accumulator_at_its_scale() -> None:
    from nnchip import QuantConfig, calibrate, quantize
    from nnchip.vq import snap_codebooks
    from nnchip.vq.integer import integer_bias

    gm = converted(build("cnn_tiny", in_channels=1, image_size=8), k=16)
    qmodel = calibrate(quantize(gm, QuantConfig(), example_inputs=X[:2]), [X])
    snap_codebooks(qmodel)
    layer = dict(lut_layers(qmodel.gm))["conv2"]
    layer.quantize_tables = True
    scale = float(layer.grid_scale)
    x = torch.round(torch.randn(4, 16, 8, 8) / scale) * scale  # on the input grid (zero point 0)
    rows = layer.rows(x)  # (N, D)
    codebook = torch.round(layer.codebooks.detach().double() / scale).to(torch.int64)
    index = encode_int(torch.round(rows.double() / scale).to(torch.int64), codebook, layer.metric)  # (N, C)
    tables, scales = integer_tables(layer.flat_weight(), layer.codebooks, layer.table_bits, layer.table_granularity)
    acc = gather_accumulate(index, tables) + integer_bias(layer.bias, scales)  # (N, M) int64
    expected = layer.unrows((acc.double() * scales).float(), x)
    assert torch.equal(layer.eval()(x), expected)
