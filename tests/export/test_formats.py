"""Weight files in every text/binary format read back (numpy reader) to the integers of the .npy files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from lowering_cases import lowered

from nnchip.cli.export import _formats
from nnchip.core.errors import ConfigError
from nnchip.export import ExportError, export, load_export
from nnchip.export.reader import parse_mif
from nnchip.quant import default_weight_spec

FILE_FORMATS = ("bin", "hex", "coe", "mif", "h")


@pytest.mark.parametrize(("precision", "changes"), [("w4a4", {}), ("w2a2", {}), ("w1a8", {}),
                                                    ("w4a4", {"weight": default_weight_spec(4, "pot")}),
                                                    ("w4a4", {"weight": default_weight_spec(3, "dorefa")})])
def test_every_format_reads_back_to_the_same_integers(precision: str, changes: dict, tmp_path: Path) -> None:
    _, graph, _, _ = lowered("cnn", precision, **changes)
    for word_bits in (8, 32):
        _check_round_trip(export(graph, tmp_path / f"e{word_bits}", formats=("npy", *FILE_FORMATS),
                                 word_bits=word_bits))


def _check_round_trip(root: Path) -> None:
    model = load_export(root)
    checked = set()
    for node in model.manifest["nodes"]:
        if "weight" not in node["params"]:
            continue
        expected = model.read_param(node["name"], "weight", "npy")
        for fmt in FILE_FORMATS:
            assert np.array_equal(model.read_param(node["name"], "weight", fmt), expected), (node["name"], fmt)
        checked.add(node["attrs"]["weight_encoding"])
        assert expected.min() < 0  # signed values really took part
    assert checked
    manifest = json.loads((root / "manifest.json").read_text())
    listed = set(manifest["files"])
    for node in manifest["nodes"]:
        for entry in node["params"].values():
            assert all(entry[f] in listed for f in FILE_FORMATS if f in entry)


def test_low_bit_words_pack_several_codes(tmp_path: Path) -> None:
    _, graph, _, _ = lowered("cnn", "w2a2")
    root = export(graph, tmp_path / "e", formats=("npy", "hex", "coe", "mif", "h"), word_bits=16)
    node = next(n for n in graph.nodes if n.attrs.get("weight_bits") == 2)
    base = f"{root}/params/{node.name}.weight"
    words = Path(f"{base}.hex").read_text().split()
    assert len(words) == -(-node.params["weight"].size // 8) and all(len(w) == 4 for w in words)
    assert parse_mif(Path(f"{base}.mif").read_text()) == [int(w, 16) for w in words]
    header = Path(f"{base}.h").read_text()
    assert "static const int8_t" in header and "_BITS 2" in header and "_WORD_BITS 16" in header


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_header_compiles_and_holds_the_values(tmp_path: Path) -> None:
    _, graph, _, _ = lowered("cnn", "w4a4")
    root = export(graph, tmp_path / "e", formats=("npy", "h"))
    node = next(n for n in graph.nodes if n.op == "linear")
    ident = f"{node.name}_weight"
    program = tmp_path / "main.c"
    program.write_text(f'#include <stdio.h>\n#include "{root}/params/{node.name}.weight.h"\n'
                       f"int main(void) {{ long s = 0; for (int i = 0; i < NNCHIP_{ident.upper()}_SIZE; i++) "
                       f"s += (long)(i + 1) * {ident}[i]; printf(\"%ld\\n\", s); return 0; }}\n")
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-o", str(tmp_path / "main"), str(program)], check=True)
    printed = int(subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout)
    values = node.params["weight"].ravel()
    assert printed == int((np.arange(1, values.size + 1) * values).sum())


def test_bad_format_names_and_missing_files(tmp_path: Path) -> None:
    _, graph, _, _ = lowered("cnn", "w8a8")
    with pytest.raises(ConfigError, match="unknown format.*vhdl"):
        export(graph, tmp_path / "e", formats=("npy", "vhdl"))
    with pytest.raises(ConfigError, match="--formats: unknown format"):
        _formats("npy,verilog")
    assert _formats("npy,coe,mif,h,onnx,onnx-qdq") == ("npy", "coe", "mif", "h", "onnx", "onnx-qdq")
    root = export(graph, tmp_path / "e", formats=("npy", "coe"))
    model = load_export(root)
    with pytest.raises(ExportError, match="has no 'mif' file"):
        model.read_param(graph.nodes[0].name, "weight", "mif")
