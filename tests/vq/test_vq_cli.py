"""`nnchip vq RECIPE.yaml` end to end on the digits (short schedules), the committed recipe, bad recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nnchip.cli.main import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "vq"


def test_committed_recipe_equals_the_demo_row() -> None:
    from nnchip.vq.demo_stage import VQ_ROW, vq_row_recipe

    path = RECIPES / f"{VQ_ROW['row_id']}.yaml"
    assert yaml.safe_load(path.read_text()) == vq_row_recipe()


def test_vq_command_lowers_exports_and_verifies(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    recipe = yaml.safe_load((RECIPES / "cnn_tiny-vq-v4k16-l2.yaml").read_text())
    recipe["pretrain"]["epochs"] = 4
    recipe["vq"].update(metric="chebyshev", k=8)
    recipe["vq_train"].update(joint_epochs=1, final_epochs=1)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["vq", str(path), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    assert record["bit_exact"] is True and record["metric"] == "chebyshev" and record["vq_k"] == 8
    assert record["int_acc"] > 0.8
    golden = tmp_path / "out" / "export" / "golden"
    assert any(p.suffix == ".hex" for p in golden.iterdir())  # packed LUT indices
    params = {p.name for p in (tmp_path / "out" / "export" / "params").iterdir()}
    assert any(n.endswith("codebook.bin") for n in params) and any(n.endswith("table.hex") for n in params)


@pytest.mark.parametrize(("text", "message"), [
    ("model: cnn_tiny\n", "no `vq` section"),
    ("model: cnn_tiny\nvq: {v: 4, k: 1}\n", "vq.k"),
    ("model: cnn_tiny\nvq: {metric: cosine}\n", "vq.metric: unknown vq metric 'cosine'"),
    ("model: cnn_tiny\nvq: {v: 4}\nvq_train: {joint_epochs: -1}\n", "vq_train.joint_epochs"),
    ("model: cnn_tiny\nvq: {v: 5}\n", "vq.v = 5 does not divide the input width D = 144 of conv2"),
])
def test_bad_recipes_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                      message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["vq", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
