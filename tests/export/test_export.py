"""Export: the numpy reader reproduces the interpreter exactly; corrupt exports get one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lowering_cases import lowered

from nnchip.core.errors import ConfigError
from nnchip.export import ExportError, export, load_export, verify
from nnchip.export.packing import pack_bits, unpack_bits
from nnchip.lower import run

READER = Path(__file__).resolve().parents[2] / "src" / "nnchip" / "export" / "reader.py"


@pytest.mark.parametrize("kind", ["cnn", "vit"])
@pytest.mark.parametrize("precision", ["w8a8", "w4a4", "w2a2", "w1a8"])
def test_numpy_reader_is_bit_exact_with_the_interpreter(kind: str, precision: str, tmp_path: Path) -> None:
    _, graph, _, x_int = lowered(kind, precision)
    export(graph, tmp_path / "e", formats=("npy", "bin", "hex"), golden_inputs=x_int[:6])
    report = verify(tmp_path / "e")
    assert report and all(matched == total for matched, total in report.values())
    produced = load_export(tmp_path / "e").run(x_int[6:12].numpy())
    expected = run(graph, x_int[6:12]).tensors
    for name in graph.outputs:
        assert np.array_equal(produced[name], expected[name].numpy())


def test_nan_scales_in_the_manifest_still_verify(tmp_path: Path) -> None:
    _, graph, _, x_int = lowered("vit", "w8a8")
    export(graph, tmp_path / "e", golden_inputs=x_int[:4])
    manifest_path = tmp_path / "e" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for tensor in manifest["tensors"].values():
        tensor["scale"] = float("nan")
    manifest_path.write_text(json.dumps(manifest))
    assert all(m == t for m, t in verify(tmp_path / "e").values())


def test_packed_bin_is_exactly_the_bit_width(tmp_path: Path) -> None:
    _, graph, _, x_int = lowered("cnn", "w4a4")
    export(graph, tmp_path / "e", formats=("npy", "bin"))
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    packed = sum((tmp_path / "e" / e["bin"]).stat().st_size for n in manifest["nodes"]
                 for e in n["params"].values() if "bin" in e)
    ideal = sum(np.prod(e["shape"]) * e["bits"] / 8 for n in manifest["nodes"] for e in n["params"].values()
                if "bin" in e)
    assert packed / ideal <= 1.01


def test_pack_round_trip() -> None:
    codes = np.random.default_rng(0).integers(0, 8, 1001)
    assert np.array_equal(unpack_bits(pack_bits(codes, 3), 3, 1001), codes)


def _exported(tmp_path: Path) -> Path:
    _, graph, _, x_int = lowered("cnn", "w8a8")
    return export(graph, tmp_path / "e", golden_inputs=x_int[:2])


def test_altered_missing_and_escaping_files(tmp_path: Path) -> None:
    root = _exported(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    victim = root / next(iter(manifest["files"]))
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ExportError, match="SHA-256 mismatch"):
        load_export(root)
    victim.unlink()
    with pytest.raises(ExportError, match="missing"):
        load_export(root)
    manifest["files"] = {"../outside.npy": "0" * 64}
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="escapes the export directory"):
        load_export(root)
    (root / "manifest.json").write_text('{"format": "nnchip-intgraph", "vers')
    with pytest.raises(ExportError, match="corrupt JSON"):
        load_export(root)


def test_failed_export_leaves_no_directory(tmp_path: Path) -> None:
    _, graph, _, _ = lowered("cnn", "w8a8")
    with pytest.raises(ConfigError, match="unknown format"):
        export(graph, tmp_path / "e", formats=("npy", "vhdl"))
    graph.nodes[0].op = "not_an_op"
    with pytest.raises(Exception):  # noqa: B017 - the interpreter refuses the unknown op during golden vectors
        export(graph, tmp_path / "e", golden_inputs=np.zeros(1))
    assert not (tmp_path / "e").exists() and not any(p.name.startswith(".e.tmp") for p in tmp_path.iterdir())


def test_reader_imports_neither_torch_nor_the_lowering() -> None:
    script = (
        "import sys, importlib.util\n"
        "sys.modules['torch'] = None\n"
        "spec = importlib.util.spec_from_file_location('reader', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert not any(name.startswith('nnchip.lower') for name in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(READER)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
