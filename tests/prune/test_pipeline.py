"""prune → quantize → lower → export: pruned weights are exact zeros in the fake-quant model, the IntGraph,
every exported file and the sparse formats; the hardware workload and energy see the density."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from models_for_tests import TransformerViT, randomize_batchnorm

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.mask import weight_mask
from nnchip.export import export, verify
from nnchip.export.packing import unpack_bits
from nnchip.export.sparse import csr, detect_nm, nm_compress, nm_decompress
from nnchip.hw.energy import workload_energy
from nnchip.hw.specs import load_energy
from nnchip.hw.workload import workload_from_intgraph
from nnchip.lower import lower
from nnchip.models import build
from nnchip.prune import PruneConfig, prune
from nnchip.quant import default_act_spec, default_weight_spec

W4A4 = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"))


def _pipeline(model: torch.nn.Module, x: torch.Tensor, config: PruneConfig, tmp_path: Path):
    pruned = prune(model, config, example_inputs=x[:1])
    qmodel = calibrate(quantize(pruned, W4A4, example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    directory = export(graph, tmp_path / "e", formats=("npy", "bin", "hex", "sparse"), golden_inputs=x_int[:4])
    return pruned, qmodel, graph, directory


def _decode_hex(path: Path, bits: int, count: int, word_bits: int = 32) -> np.ndarray:
    per_word = word_bits // bits
    words = [int(line, 16) for line in path.read_text().split()]
    codes = [(w >> (slot * bits)) & ((1 << bits) - 1) for w in words for slot in range(per_word)]
    return np.array(codes[:count], dtype=np.int64)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_pruned_weights_are_zero_everywhere(kind: str, tmp_path: Path) -> None:
    if kind == "cnn":
        model = randomize_batchnorm(build("cnn_tiny", num_classes=10, in_channels=1, image_size=8)).eval()
    else:
        model = TransformerViT().eval()
    x = torch.randn(32, 1, 8, 8)
    pruned, qmodel, graph, directory = _pipeline(model, x, PruneConfig(structure="nm", n=2, m=4), tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    masked = {path: weight_mask(layer) for path, layer in qmodel.gm.named_modules() if weight_mask(layer) is not None}
    assert masked, "quantize() must keep the pruning masks"
    checked = 0
    for node in graph.nodes:
        source = str(node.attrs.get("source", "")).split(" ")[0]
        if node.op not in ("conv2d", "linear") or source not in masked:
            continue
        pruned_positions = masked[source] == 0  # (C_out, ...)
        layer = qmodel.gm.get_submodule(source)
        assert bool((layer.quantized_weight()[pruned_positions] == 0).all())  # fake quant keeps zeros
        weight = node.params["weight"]
        zeros = pruned_positions.numpy()
        assert (weight[zeros] == 0).all()  # IntGraph
        entry = next(n for n in manifest["nodes"] if n["name"] == node.name)["params"]["weight"]
        flat = zeros.reshape(-1)
        npy = np.load(directory / entry["npy"])
        packed = unpack_bits((directory / entry["bin"]).read_bytes(), entry["bits"], weight.size)
        hexed = _decode_hex(directory / entry["hex"], entry["bits"], weight.size)
        assert (npy[zeros] == 0).all() and (packed[flat] == 0).all() and (hexed[flat] == 0).all()
        sparse = entry["sparse"]
        mask_bits = unpack_bits((directory / sparse["bitmask"]["bin"]).read_bytes(), 1, weight.size)
        assert (mask_bits[flat] == 0).all() and np.array_equal(mask_bits, (weight != 0).reshape(-1))
        assert sparse["nm"]["n"] <= 2 and sparse["nm"]["m"] == 4
        n, m = sparse["nm"]["n"], sparse["nm"]["m"]
        count = weight.size // m * n
        index = unpack_bits((directory / sparse["nm"]["index"]).read_bytes(), sparse["nm"]["index_bits"], count)
        codes = unpack_bits((directory / sparse["nm"]["values"]).read_bytes(), entry["bits"], count)
        values = np.where(codes >= 2 ** (entry["bits"] - 1), codes - 2 ** entry["bits"], codes)
        shape = tuple(sparse["nm"]["shape"])
        rebuilt = nm_decompress(values.reshape(shape), index.reshape(shape), m, weight.shape)
        assert np.array_equal(rebuilt, weight)
        columns = np.load(directory / sparse["csr"]["columns"])
        pointers = np.load(directory / sparse["csr"]["row_pointers"])
        rows = np.repeat(np.arange(weight.shape[0]), np.diff(pointers))
        assert not zeros.reshape(weight.shape[0], -1)[rows, columns].any()
        assert entry["density"] == pytest.approx(float((weight != 0).mean()))
        assert manifest["weight_density"][node.name] <= 0.5
        checked += 1
    assert checked >= 2
    assert all(matched == total for matched, total in verify(directory).values())


def test_workload_and_energy_count_only_remaining_work(tmp_path: Path) -> None:
    model = randomize_batchnorm(build("cnn_tiny", num_classes=10, in_channels=1, image_size=8)).eval()
    x = torch.randn(32, 1, 8, 8)
    dense_q = calibrate(quantize(model, W4A4, example_inputs=x[:2]), [x])
    _, _, graph, _ = _pipeline(model, x, PruneConfig(structure="unstructured", sparsity=0.75), tmp_path)
    sparse_work, dense_work = workload_from_intgraph(graph), workload_from_intgraph(lower(dense_q))
    densities = {layer.name: layer.weight_density for layer in sparse_work.layers}
    assert densities["conv2"] <= 0.25 and densities["conv3"] <= 0.25 and densities["conv1"] > 0.5
    spec = load_energy()
    skipping = workload_energy(sparse_work, spec, zero_skipping=True)
    no_skipping = workload_energy(sparse_work, spec, zero_skipping=False)
    dense = workload_energy(dense_work, spec, zero_skipping=False)
    assert skipping.compute_pj < 0.5 * no_skipping.compute_pj
    assert no_skipping.compute_pj == pytest.approx(dense.compute_pj, rel=1e-9)  # same shapes, bits
    expected = sum(layer.macs * layer.weight_density for layer in sparse_work.layers)
    assert sum(layer.macs for layer in sparse_work.layers) > expected


def test_sparse_format_helpers() -> None:
    weight = np.array([[0, 3, 0, -1, 2, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0]])
    assert detect_nm(weight) == (2, 4)
    values, index = nm_compress(weight, 2, 4)
    assert index.tolist() == [[[1, 3], [0, 1]], [[0, 1], [0, 1]]] and values[0, 0].tolist() == [3, -1]
    assert np.array_equal(nm_decompress(values, index, 4, weight.shape), weight)
    v, c, p = csr(weight)
    assert v.tolist() == [3, -1, 2, 1, 1] and c.tolist() == [1, 3, 4, 4, 5] and p.tolist() == [0, 3, 5]
    assert detect_nm(np.ones((2, 8), dtype=np.int64)) is None
