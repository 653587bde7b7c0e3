"""`nnchip export` / `nnchip lower` / `nnchip verify` end to end on a digits recipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from nnchip.cli.main import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "cnn_tiny-w8a8-ptq.yaml"


def test_export_then_verify(tmp_path: Path, capsys) -> None:
    assert main(["export", str(RECIPE), "--formats", "npy,bin,hex", "--out", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "summary.json").read_text())[0]
    assert record["bit_exact"] is True and abs(record["int_acc"] - record["acc"]) <= 0.001
    export_dir = tmp_path / "run" / "export"
    assert any(p.suffix == ".hex" for p in (export_dir / "params").iterdir())
    assert main(["verify", str(export_dir)]) == 0
    assert "tensors bit-exact" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    victim = next((broken / "golden").iterdir())
    victim.write_bytes(victim.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    done = subprocess.run([sys.executable, "-m", "nnchip.cli.main", "verify", str(broken)], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "SHA-256 mismatch" in done.stderr and "Traceback" not in done.stderr


def test_unknown_format_is_one_line(capsys) -> None:
    assert main(["export", str(RECIPE), "--formats", "npy,vhdl"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown format(s) vhdl" in err
