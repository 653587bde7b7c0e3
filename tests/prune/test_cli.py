"""`nnchip prune RECIPE.yaml`: prune → quantize → lower → export (sparse formats) → verify, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nnchip.cli.main import main
from nnchip.core.errors import ConfigError
from nnchip.prune import PRUNE_STRUCTURES
from nnchip.prune.recipe import prune_recipe_from_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "prune"

TINY = {
    "model": {"name": "cnn_tiny", "num_classes": 10, "in_channels": 1, "image_size": 8, "width": 8},
    "data": {"kind": "digits", "calib_images": 64},
    "pretrain": {"epochs": 1, "lr": 0.05, "batch_size": 64, "optimizer": "sgd", "progress": False},
    "prune": {"structure": "nm", "n": 2, "m": 4},
    "finetune": {"epochs": 1, "lr": 0.001, "max_steps": 5},
    "quant": {"weight": {"bits": 4, "quantizer": "lsq"}, "act": {"bits": 4, "quantizer": "lsq"}},
}


def test_prune_cli_exports_a_verified_sparse_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    assert main(["prune", str(recipe), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    assert record["structure"] == "nm" and record["sparsity"] == 0.5 and record["bit_exact"] is True
    assert record["layer_density"]["conv2"] == 0.5 and record["layer_density"]["conv1"] == 1.0
    assert (record["w_bits"], record["a_bits"]) == (4, 4) and 0 <= record["int_acc"] <= 1
    manifest = json.loads((tmp_path / "out" / "export" / "manifest.json").read_text())
    sparse_layers = [n for n in manifest["nodes"] if "sparse" in n["params"].get("weight", {})]
    assert sparse_layers and all(n["params"]["weight"]["sparse"]["nm"]["m"] == 4 for n in sparse_layers
                                 if n["params"]["weight"]["density"] <= 0.5)
    assert "nm" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "message"), [
    ({"prune": {"structure": "nm", "sparsty": 0.5}}, "unknown recipe key 'prune.sparsty'"),
    ({"prune": {"sparsity": 1.5}}, "prune.sparsity must be in [0, 1), got 1.5"),
    ({"finetune": {"lrr": 1}}, "unknown recipe key 'finetune.lrr'"),
    ({"prune": {"structure": "nm", "n": 8, "m": 4}}, "prune.n (8) must not exceed prune.m (4)"),
])
def test_bad_recipe_is_one_line_exit_2(change: dict, message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, **change}))
    assert main(["prune", str(recipe), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_committed_prune_recipes_parse() -> None:
    for path in sorted(RECIPES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        data["model"] = {k: v for k, v in data["model"].items() if k != "checkpoint"}
        if "path" in data.get("data", {}):
            data.pop("data")
        recipe = prune_recipe_from_dict(data)
        assert recipe.prune.structure in PRUNE_STRUCTURES, path.name


def test_demo_prune_recipes_equal_the_demo_rows() -> None:
    from nnchip.prune.demo_stage import prune_row_recipe

    for model in ("cnn_tiny", "vit_tiny"):
        path = RECIPES / f"{model}-2of4-w4a4.yaml"
        assert yaml.safe_load(path.read_text()) == prune_row_recipe(model), path.name


def test_prune_section_is_required() -> None:
    with pytest.raises(ConfigError, match="prune is required"):
        prune_recipe_from_dict({"model": "cnn_tiny"})
