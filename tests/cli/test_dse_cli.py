"""`nnchip dse`: the chosen design as JSON, Pareto CSV/PNG, an emitted recipe that loads, one-line errors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from nnchip.cli.main import main
from nnchip.hw.specs import SPEC_DIR
from nnchip.recipes import load_recipe


def test_dse_deit_base_json_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "dse"
    recipe = tmp_path / "chosen.yaml"
    code = main(["dse", "--model", "deit_base", "--device", "zcu102", "--target-fps", "30", "--w-bits", "1",
                 "--json", "--out", str(out), "--emit-recipe", str(recipe), "--array", "32x32", "--dataflow", "os"])
    assert code == 0
    chosen = json.loads(capsys.readouterr().out)
    keys = {"device", "w_bits", "a_bits", "fps", "t_m", "t_n", "t_a", "t_b", "lut", "ff", "dsp", "bram36"}
    assert keys <= set(chosen)
    assert (chosen["device"], chosen["w_bits"], chosen["a_bits"]) == ("zcu102", 1, 6) and chosen["fps"] >= 30
    assert chosen["systolic"]["dataflow"] == "os" and 0 < chosen["systolic"]["utilisation"] <= 1
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert rows and {"fps", "lut", "dsp", "bram36", "energy_mj", "resource_use"} <= set(rows[0])
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "dse.json").read_text())
    assert len(report["best_per_precision"]) == 5 and report["chosen"]["a_bits"] == 6
    emitted = load_recipe(recipe)
    assert emitted.model.name == "deit_base" and emitted.quant.weight.quantizer == "binary"
    assert (emitted.quant.weight.bits, emitted.quant.act.bits) == (1, 6)
    header = recipe.with_suffix(".h").read_text()
    assert "#define NNCHIP_A_BITS 6" in header and f"#define NNCHIP_T_M {chosen['t_m']}" in header


def test_dse_table_output_for_a_cnn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert main(["dse", "--model", "cnn_tiny", "--device", "z7020", "--target-fps", "1000", "--a-bits", "8",
                 "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "chosen: W8A8" in text and "design points" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--device", "zcu999"], "unknown device 'zcu999'"),
     (["--device", "zcu102", "--dataflow", "rs"], "--dataflow must be one of os, ws, is"),
     (["--device", "zcu102", "--array", "0x8"], "--array sizes must be positive"),
     (["--device", "zcu102", "--target-fps", "-3"], "--target-fps must be positive"),
     (["--device", "zcu102", "--target-fps", "1e7"], "no design meets 1e\\+07 FPS on zcu102: best achievable"),
     (["--device", "zcu102", "--image-size", "-8"], "image_size must be positive"),
     (["--device", "zcu102", "--accuracy", "missing.json"], "accuracy file not found")],
)
def test_dse_bad_input_exits_2(extra: list[str], message: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    args = ["dse", "--model", "cnn_tiny", "--target-fps", "10", "--out", str(tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_dse_spec_file_with_a_missing_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boards = yaml.safe_load((SPEC_DIR / "fpga.yaml").read_text())
    del boards["zcu102"]["bram36"]
    path = tmp_path / "boards.yaml"
    path.write_text(yaml.safe_dump(boards))
    assert main(["dse", "--model", "cnn_tiny", "--device", "zcu102", "--device-file", str(path), "--target-fps", "1",
                 "--out", str(tmp_path)]) == 2
    assert "entry 'zcu102' is missing field 'bram36'" in capsys.readouterr().err
