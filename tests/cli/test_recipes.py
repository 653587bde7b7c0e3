"""Recipe loading: 1:1 mapping onto configs, errors that name the key path, the committed recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nnchip.core.errors import ConfigError, DataError
from nnchip.recipes import load_recipe, quant_config_from_dict, recipe_from_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_quant_section_maps_onto_quantconfig() -> None:
    config = quant_config_from_dict({"weight": {"bits": 4, "quantizer": "lsq"}, "act": {"bits": 6},
                                     "first_last_bits": None})
    assert (config.weight.bits, config.weight.quantizer, config.weight.granularity) == (4, "lsq", "channel")
    assert (config.act.bits, config.act.signed) == (6, False)
    assert config.first_last_bits is None


@pytest.mark.parametrize(("quant", "path"), [
    ({"act": {"bitz": 4}}, "quant.act.bitz"),
    ({"weight": {"bits": 4, "foo": 1}}, "quant.weight.foo"),
    ({"wieght": {"bits": 4}}, "quant.wieght"),
    ({"overrides": [{"path": "fc", "weight": {"bitz": 2}}]}, "quant.overrides[0].weight.bitz"),
])
def test_unknown_quant_key_is_named_by_path(quant: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        quant_config_from_dict(quant)


@pytest.mark.parametrize("bits", [0, 17, "4", 4.5, True])
def test_bad_bits(bits: object) -> None:
    with pytest.raises(ConfigError, match=r"quant\.weight\.bits"):
        quant_config_from_dict({"weight": {"bits": bits}})


def test_unknown_top_level_and_section_keys() -> None:
    with pytest.raises(ConfigError, match="'modle'"):
        recipe_from_dict({"modle": "cnn_tiny"})
    with pytest.raises(ConfigError, match=r"data\.pth"):
        recipe_from_dict({"model": "cnn_tiny", "data": {"kind": "digits", "pth": "x"}})
    with pytest.raises(ConfigError, match=r"ptq\.method\b"):
        recipe_from_dict({"model": "cnn_tiny", "ptq": {"method": ["calibrate"]}})


def test_unknown_ptq_method() -> None:
    with pytest.raises(ConfigError, match=r"ptq\.methods\[1\].*'nosuch'"):
        recipe_from_dict({"model": "cnn_tiny", "ptq": {"methods": ["calibrate", "nosuch"]}})


def test_missing_data_path_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "model: cnn_tiny\ndata: {kind: mnist_idx, path: nowhere/mnist}\n")
    with pytest.raises(DataError, match="nowhere/mnist"):
        load_recipe(path)
    with pytest.raises(ConfigError, match=r"data\.path is required"):
        recipe_from_dict({"model": "cnn_tiny", "data": {"kind": "imagefolder"}})


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {name: cnn_tiny, checkpoint: missing.safetensors}\n")
    with pytest.raises(DataError, match="missing.safetensors"):
        load_recipe(path)


def test_dse_emitted_recipe_is_accepted(tmp_path: Path) -> None:
    """`nnchip dse --emit-recipe` writes a bare zoo name and weight/act bits + quantizer (+ act signed)."""
    path = write(tmp_path, yaml.safe_dump({
        "model": "resnet20",
        "quant": {"weight": {"bits": 4, "quantizer": "lsq"}, "act": {"bits": 4, "quantizer": "lsq", "signed": False}},
    }))
    recipe = load_recipe(path)
    assert recipe.model.name == "resnet20" and recipe.model.checkpoint is None
    assert recipe.data.kind == "digits"
    assert recipe.quant.weight.bits == 4 and recipe.quant.act.signed is False
    assert recipe.ptq.methods == ("calibrate",)


def test_not_yaml_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="empty"):
        load_recipe(write(tmp_path, "", "empty.yaml"))
    with pytest.raises(DataError, match="recipe not found"):
        load_recipe(tmp_path / "absent.yaml")


def test_committed_demo_recipes_equal_the_demo_rows() -> None:
    from nnchip.cli.demo import DEMO_ROWS, demo_row_recipe

    for row in DEMO_ROWS:
        path = RECIPES / f"{row['row_id']}.yaml"
        assert path.is_file(), f"{path} missing"
        assert yaml.safe_load(path.read_text()) == demo_row_recipe(row), path.name


def test_committed_recipes_parse() -> None:
    pytest.importorskip("nnchip.train", reason="TrainConfig not available")
    for path in sorted(RECIPES.glob("*.yaml")):
        text = yaml.safe_load(path.read_text())
        if isinstance(text.get("model"), dict) and "checkpoint" in text["model"]:
            text["model"] = {k: v for k, v in text["model"].items() if k != "checkpoint"}  # trained elsewhere
        text.pop("data", None) if "path" in (text.get("data") or {}) else None  # shared data may be absent
        recipe = recipe_from_dict(text)
        assert recipe.quant.weight.bits in (4, 8), path.name
