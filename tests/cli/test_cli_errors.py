"""Bad input through the CLI: exit status 2, one line on stderr naming the culprit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nnchip.cli.main import main

DIGITS_MODEL = "model: {name: cnn_tiny, num_classes: 10, in_channels: 1, image_size: 8}\n"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("body", "culprit"), [
    (DIGITS_MODEL + "quant: {weight: {bits: 17}}\n", "quant.weight.bits"),
    (DIGITS_MODEL + "quant: {act: {bits: 0}}\n", "quant.act.bits"),
    (DIGITS_MODEL + "ptq: {methods: [calibrate, magic]}\n", "magic"),
    (DIGITS_MODEL + "quant: {weight: {bits: 4, quantizer: nosuch}}\n", "nosuch"),
    (DIGITS_MODEL + "quant: {act: {bitz: 4}}\n", "quant.act.bitz"),
    (DIGITS_MODEL + "trian: {epochs: 1}\n", "trian"),
    (DIGITS_MODEL + "data: {kind: cifar10_tar, path: no/such/cifar.tar.gz}\n", "no/such/cifar.tar.gz"),
    ("model: {name: cnn_tiny, checkpoint: absent.safetensors}\n", "absent.safetensors"),
])
def test_bad_recipe_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                                          culprit: str) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(body)
    code, err = run_cli(["quantize", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert culprit in one_line_error(err)
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x00" * 64])
def test_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    for suffix in (".safetensors", ".pt"):
        ckpt = tmp_path / f"model{suffix}"
        ckpt.write_bytes(content)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model: {{name: cnn_tiny, in_channels: 1, image_size: 8, checkpoint: {ckpt.name}}}\n")
        code, err = run_cli(["quantize", str(recipe), "--out", str(tmp_path / "out")], capsys)
        assert code == 2
        line = one_line_error(err)
        assert ckpt.name in line and "checkpoint" in line


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["quantize", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "nope.yaml" in one_line_error(err)


def test_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(DIGITS_MODEL + "quant: {act: {bitz: 4}}\n")
    proc = subprocess.run([sys.executable, "-m", "nnchip.cli.main", "quantize", str(recipe)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "quant.act.bitz" in one_line_error(proc.stderr)
