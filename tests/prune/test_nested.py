"""Nested multi-level sparsity: nested masks (unstructured, N:M), level switching, sandwich fine-tuning, and the
pipeline quantize → lower at every level → "nested" export whose prefixes are every level's integer weights,
read back by the numpy reader bit-exactly; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from models_for_tests import TransformerViT, randomize_batchnorm
from torch import nn

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.errors import ConfigError, ConversionError
from nnchip.core.mask import raw_weight, weight_mask
from nnchip.core.nested_mask import set_sparsity_level, sparsity_levels
from nnchip.export import export, verify
from nnchip.export.reader import ExportError, load_export
from nnchip.lower import lower
from nnchip.lower.interpreter import run
from nnchip.models import build
from nnchip.prune import PruneConfig, finetune, prune, sparsity_report
from nnchip.prune.nested import nested_keep, sandwich_levels
from nnchip.prune.registry import prunable_layers
from nnchip.quant import default_act_spec, default_weight_spec

W4A4 = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"))
LEVELS = (0.5, 0.75, 0.9)


def _cnn() -> nn.Module:
    return randomize_batchnorm(build("cnn_tiny", num_classes=10, in_channels=1, image_size=8)).eval()


def test_nested_keep_ranks_once_and_nests() -> None:
    scores = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.5, 0.0])
    assert nested_keep(scores, [4, 2, 1]).tolist() == [1, 3, 0, 2, 1, 0]  # 0.5 tie: lower index first
    groups = torch.tensor([[0.1, 0.4, 0.3, 0.2], [0.8, 0.1, 0.0, 0.9]])
    assert nested_keep(groups, [2, 1]).tolist() == [[0, 2, 1, 0], [1, 0, 0, 2]]  # per group of m


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_unstructured_levels_are_nested_magnitude_masks(scope: str) -> None:
    config = PruneConfig(levels=LEVELS, scope=scope)
    model = prune(_cnn(), config)
    assert sparsity_levels(model) == LEVELS
    layers = prunable_layers(model, config)
    masks = []
    for level, sparsity in enumerate(LEVELS):
        set_sparsity_level(model, level)
        masks.append([weight_mask(layer) for _, layer in layers])
        total = sum(int(m.numel()) for m in masks[-1])
        zeros = sum(int((m == 0).sum()) for m in masks[-1])
        assert zeros == round(sparsity * total) if scope == "global" else all(
            int((m == 0).sum()) == round(sparsity * m.numel()) for m in masks[-1])
        kept = torch.cat([raw_weight(layer).detach().abs()[mask > 0] for (_, layer), mask in zip(layers, masks[-1],
                                                                                                 strict=True)])
        dropped = torch.cat([raw_weight(layer).detach().abs()[mask == 0] for (_, layer), mask in zip(layers, masks[-1],
                                                                                                    strict=True)])
        if scope == "global":
            assert kept.min() >= dropped.max()
        assert {r.path: r.density for r in sparsity_report(model)}["conv1"] == 1.0  # first layer stays dense
    for denser, sparser in zip(masks, masks[1:], strict=False):
        assert all(bool((s <= d).all()) for d, s in zip(denser, sparser, strict=True))  # M_l ⊇ M_{l+1}


def test_nm_levels_nest_one_of_four_in_two_of_four() -> None:
    model = prune(_cnn(), PruneConfig(structure="nm", m=4, levels=(0.5, 0.75)))
    layer = model.conv2
    two = weight_mask(set_sparsity_level(model, 0).conv2).reshape(layer.weight.shape[0], -1, 4)
    one = weight_mask(set_sparsity_level(model, 1).conv2).reshape(layer.weight.shape[0], -1, 4)
    assert torch.equal(two.sum(-1), torch.full(two.shape[:2], 2.0)) and torch.equal(one.sum(-1),
                                                                                  torch.full(one.shape[:2], 1.0))
    assert bool((one <= two).all())
    groups = raw_weight(layer).detach().abs().reshape(two.shape)
    assert torch.equal(groups.argmax(-1), one.argmax(-1))  # 1:4 keeps each group's largest |w|


def test_sandwich_trains_densest_sparsest_and_one_other() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        levels = sandwich_levels(5, generator)
        assert len(levels) == 3 and {0, 4} <= set(levels) and len(set(levels)) == 3
    assert sorted(sandwich_levels(3, generator)) == [0, 1, 2] and sorted(sandwich_levels(2, generator)) == [0, 1]


def test_nested_finetune_keeps_every_level_and_ends_at_the_configured_level() -> None:
    from torch.utils.data import TensorDataset

    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    config = PruneConfig(levels=LEVELS, level=1, schedule="gradual", steps=2)
    model = finetune(_cnn(), TensorDataset(x, y), config, epochs=1, lr=1e-2, batch_size=16)
    assert model.conv2.parametrizations.weight[0].level == 1
    previous = None
    for level, sparsity in enumerate(LEVELS):
        mask = weight_mask(set_sparsity_level(model, level).conv2)
        assert float((mask == 0).float().mean()) == pytest.approx(sparsity, abs=1 / mask.numel())
        assert previous is None or bool((mask <= previous).all())
        previous = mask


def _lowered_levels(model: nn.Module, config: PruneConfig, x: torch.Tensor):
    pruned = prune(model, config)
    qmodel = calibrate(quantize(pruned, W4A4, example_inputs=x[:2]), [x])
    graphs = [lower(set_sparsity_level(qmodel, level)) for level in range(len(config.levels))]
    return qmodel, graphs


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_nested_export_prefixes_are_every_level_bit_exact(kind: str, tmp_path: Path) -> None:
    model, config = ((_cnn(), PruneConfig(levels=LEVELS)) if kind == "cnn" else
                     (TransformerViT().eval(), PruneConfig(structure="nm", m=4, levels=(0.5, 0.75))))
    x = torch.randn(32, 1, 8, 8)
    qmodel, graphs = _lowered_levels(model, config, x)
    x_int = qmodel.gm.get_submodule(graphs[0].inputs[0]).int_values(x).to(torch.int64)
    exported_level = len(graphs) - 1
    directory = export(graphs[exported_level], tmp_path / "e", formats=("npy", "bin", "nested"),
                       golden_inputs=x_int[:4])
    reader = load_export(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["sparsity_levels"] == {"levels": list(config.levels), "level": exported_level}
    checked = 0
    for level, graph in enumerate(graphs):
        for node in graph.nodes:
            if "weight_nested" not in node.params:
                continue
            weight, keep = node.params["weight"], node.params["weight_keep"]
            assert (weight[keep <= level] == 0).all()  # pruned at this level: exactly 0 in its IntGraph
            entry = next(n for n in manifest["nodes"] if n["name"] == node.name)["params"]["weight"]["nested"]
            assert entry["counts"][level] == int(np.count_nonzero(weight))
            assert entry["counts"] == sorted(entry["counts"], reverse=True)
            assert np.array_equal(reader.nested_weight(node.name, level), weight)  # prefix = this level's weights
            checked += 1
        output = graph.outputs[0]
        expected = run(graph, x_int).tensors[output].numpy()
        assert np.array_equal(reader.run(x_int.numpy(), level=level)[output], expected)  # reader = interpreter
    assert checked >= 2 * len(graphs)
    assert all(matched == total for matched, total in verify(directory).values())
    # the dense files hold the exported level; the nested entries no second copy as ordinary parameters
    assert not any(key in node["params"] for node in manifest["nodes"] for key in ("weight_nested", "weight_keep"))


def test_nested_prefix_is_a_prefix_of_the_files(tmp_path: Path) -> None:
    from nnchip.export.reader import codes_to_values, unpack_stream

    x = torch.randn(32, 1, 8, 8)
    qmodel, graphs = _lowered_levels(_cnn(), PruneConfig(levels=LEVELS), x)
    directory = export(graphs[0], tmp_path / "e", formats=("npy", "nested"))
    manifest = json.loads((directory / "manifest.json").read_text())
    node = next(n for n in manifest["nodes"] if "nested" in n["params"].get("weight", {}))
    nested, shape = node["params"]["weight"]["nested"], node["params"]["weight"]["shape"]
    total = nested["counts"][0]
    codes = unpack_stream((directory / nested["values"]).read_bytes(), nested["value_bits"], total)
    index = unpack_stream((directory / nested["index"]).read_bytes(), nested["index_bits"], total)
    values = codes_to_values(codes, "twos_complement", nested["value_bits"])
    assert (values != 0).all() and len(set(index.tolist())) == total
    for level, graph in enumerate(graphs):
        count = nested["counts"][level]
        rebuilt = np.zeros(int(np.prod(shape)), dtype=np.int64)
        rebuilt[index[:count]] = values[:count]  # truncate the list: that is level `level`
        weight = next(n for n in graph.nodes if n.name == node["name"]).params["weight"]
        assert np.array_equal(rebuilt.reshape(shape), weight)


def test_level_dependent_weight_scale_is_refused() -> None:
    x = torch.randn(16, 1, 8, 8)
    qmodel = calibrate(quantize(prune(_cnn(), PruneConfig(levels=LEVELS)), W4A4, example_inputs=x[:2]), [x])
    quantizer = qmodel.gm.get_submodule("conv2").weight_quantizer
    quantizer.int_values = lambda w: torch.clamp(torch.round(w / w.abs().mean() * 2), -8, 7)  # scale from |w|
    with pytest.raises(ConversionError, match=r"conv2.*sparsity level 1 are not level 0's"):
        lower(qmodel)


def test_nested_format_and_levels_errors(tmp_path: Path) -> None:
    x = torch.randn(16, 1, 8, 8)
    plain = calibrate(quantize(_cnn(), W4A4, example_inputs=x[:2]), [x])
    with pytest.raises(ConfigError, match="formats: 'nested' needs a model with nested sparsity"):
        export(lower(plain), tmp_path / "e", formats=("npy", "nested"))
    with pytest.raises(ConfigError, match="has no nested sparsity masks"):
        set_sparsity_level(_cnn(), 0)
    with pytest.raises(ConfigError, match=r"sparsity level must be an integer in 0\.\.2"):
        set_sparsity_level(prune(_cnn(), PruneConfig(levels=LEVELS)), 3)
    qmodel, graphs = _lowered_levels(_cnn(), PruneConfig(levels=LEVELS), x)
    reader = load_export(export(graphs[0], tmp_path / "n", formats=("npy", "nested")))
    with pytest.raises(ExportError, match=r"sparsity level 3 is not one of 0\.\.2"):
        reader.run(np.zeros((1, 1, 8, 8), dtype=np.int64), level=3)
    with pytest.raises(ExportError, match="no nested sparsity levels"):
        load_export(export(lower(plain), tmp_path / "p", formats=("npy",))).run(np.zeros((1, 1, 8, 8)), level=0)


@pytest.mark.parametrize(("changes", "message"), [
    ({"levels": (0.5,)}, "prune.levels needs at least two sparsities"),
    ({"levels": (0.75, 0.5)}, "prune.levels must increase strictly"),
    ({"levels": (0.5, 1.0)}, "prune.levels[1] must be in [0, 1)"),
    ({"levels": (0.5, 0.75), "level": 2}, "prune.level 2 is not a level index 0..1"),
    ({"level": 1}, "prune.level applies to nested sparsity (prune.levels) only"),
    ({"levels": (0.5, 0.75), "structure": "channel"}, "prune.levels (nested sparsity) supports structures"),
    ({"levels": (0.5, 0.7), "structure": "nm", "m": 4}, "prune.levels[1]: 0.7 keeps 1.2 of every m = 4"),
    ({"levels": (0.5, 0.75), "schedule": "prune_regrow"}, "does not combine with schedule 'prune_regrow'"),
])
def test_bad_levels_config_is_one_line(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PruneConfig(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_prune_cli_exports_nested_levels(tmp_path: Path) -> None:
    import yaml
    from test_cli import TINY

    from nnchip.cli.main import main

    recipe = {**TINY, "prune": {"structure": "unstructured", "levels": [0.5, 0.75, 0.9], "level": 0},
              "finetune": {"epochs": 1, "lr": 0.001, "max_steps": 6}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["prune", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "--threads", "1",
                 "--level", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    assert record["levels"] == [0.5, 0.75, 0.9] and record["level"] == 1 and record["sparsity"] == 0.75
    assert record["bit_exact"] is True and record["layer_density"]["conv2"] == 0.25
    assert len(record["level_acc"]) == 3 and len(record["level_int_acc"]) == 3
    assert record["level_int_acc"][1] == pytest.approx(record["int_acc"])  # reader at level 1 = interpreter
    manifest = json.loads((tmp_path / "out" / "export" / "manifest.json").read_text())
    assert manifest["sparsity_levels"]["level"] == 1
    assert any("nested" in n["params"].get("weight", {}) for n in manifest["nodes"])
