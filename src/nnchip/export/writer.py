"""`export(graph, directory, ...)`: manifest.json + one file per integer parameter + golden vectors.

Layout of an export directory (docs/export-format.md):
    manifest.json              versioned; tensors, nodes in topological order, every file with its SHA-256
    params/<node>.<param>.npy  integer parameters (int64 .npy)
    params/<node>.<param>.bin  weights packed little-endian at their exact bit width (format "bin")
    params/<node>.<param>.hex  $readmemh text, one word per line, `word_bits` wide (format "hex")
    golden/<tensor>.npy        golden vectors: the input, every intermediate tensor and the outputs
The directory is written to a temporary sibling and renamed into place: a failed export leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnchip.core.errors import ConfigError, NnchipError
from nnchip.core.intspec import esb_magnitudes, sp2_magnitudes
from nnchip.export.packing import pack_bits, pack_variable_bits, to_hex_lines, variable_hex_lines
from nnchip.lower.interpreter import run
from nnchip.lower.intgraph import IntGraph

MANIFEST_VERSION = 1
FORMATS = ("npy", "bin", "hex")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(graph: IntGraph, directory: str | Path, *, formats: tuple[str, ...] = ("npy", "bin"),
           golden_inputs: torch.Tensor | None = None, word_bits: int = 32, overwrite: bool = True) -> Path:
    """Write `graph` (and, with `golden_inputs`, its golden vectors) to `directory` atomically."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"formats: unknown format(s) {', '.join(sorted(unknown))}; known: {', '.join(FORMATS)}")
    if word_bits not in (8, 16, 32, 64):
        raise ConfigError(f"word_bits must be 8, 16, 32 or 64, got {word_bits}")
    target = Path(directory)
    if target.exists() and not overwrite:
        raise NnchipError(f"export directory {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        manifest = _write_contents(graph, tmp, formats, golden_inputs, word_bits)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def _write_contents(graph: IntGraph, root: Path, formats: tuple[str, ...], golden_inputs: torch.Tensor | None,
                    word_bits: int) -> dict[str, Any]:
    (root / "params").mkdir()
    files: dict[str, str] = {}

    def record(relative: str) -> str:
        files[relative] = _sha256(root / relative)
        return relative

    nodes = []
    for node in graph.nodes:
        params: dict[str, Any] = {}
        for key, value in node.params.items():
            base = f"params/{node.name}.{key}"
            entry: dict[str, Any] = {"shape": list(value.shape), "dtype": "int64"}
            np.save(root / f"{base}.npy", value.astype(np.int64), allow_pickle=False)
            entry["npy"] = record(f"{base}.npy")
            if key == "weight" and node.attrs.get("weight_encoding") == "row_mixed":
                codes, widths = _row_mixed_codes(value, node.params["row_format"], node.attrs["row_formats"])
                entry.update(bits=int(widths.max()), row_bits=[int(b) for b in widths[:: max(1, value[0].size)]])
                if "bin" in formats:
                    (root / f"{base}.bin").write_bytes(pack_variable_bits(codes, widths))
                    entry["bin"] = record(f"{base}.bin")
                if "hex" in formats:
                    (root / f"{base}.hex").write_text("\n".join(variable_hex_lines(codes, widths, word_bits)) + "\n")
                    entry["hex"] = record(f"{base}.hex")
            elif key == "weight" or f"{key}_bits" in node.attrs:  # weights; LUT codebooks and tables
                bits = int(node.attrs.get(f"{key}_bits", 8))
                codes = _weight_codes(value, node.attrs.get(f"{key}_encoding", "twos_complement"), bits,
                                      int(node.attrs.get(f"{key}_mantissa_bits", 0)))
                entry["bits"] = bits
                if "bin" in formats:
                    (root / f"{base}.bin").write_bytes(pack_bits(codes, bits))
                    entry["bin"] = record(f"{base}.bin")
                if "hex" in formats:
                    (root / f"{base}.hex").write_text("\n".join(to_hex_lines(codes, bits, word_bits)) + "\n")
                    entry["hex"] = record(f"{base}.hex")
            params[key] = entry
        nodes.append({"name": node.name, "op": node.op, "inputs": node.inputs, "output": node.output,
                      "attrs": node.attrs, "params": params})
    manifest: dict[str, Any] = {
        "format": "nnchip-intgraph", "version": MANIFEST_VERSION, "inputs": graph.inputs, "outputs": graph.outputs,
        "tensors": {name: t.to_dict() for name, t in graph.tensors.items()}, "nodes": nodes, "meta": graph.meta,
        "packing": {"bin": "little-endian, element i in bits [i*b, (i+1)*b) of the stream, two's complement codes",
                    "hex": f"{word_bits}-bit words, element 0 in the least significant bits"},
    }
    if golden_inputs is not None:
        (root / "golden").mkdir()
        result = run(graph, golden_inputs)
        golden = {}
        for name, value in result.tensors.items():
            if isinstance(value, torch.Tensor):
                np.save(root / f"golden/{name}.npy", value.numpy().astype(np.int64), allow_pickle=False)
                golden[name] = record(f"golden/{name}.npy")
                _write_packed_indices(graph, name, value.numpy(), root, formats, word_bits, record)
        manifest["golden"] = {"samples": int(golden_inputs.shape[0]), "tensors": golden}
    manifest["files"] = files
    return manifest


def _row_mixed_codes(values: np.ndarray, row_format: np.ndarray, formats: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(codes, bit width of each code) of a row-mixed weight, rows in order (docs/export-format.md)."""
    rows = values.reshape(values.shape[0], -1).astype(np.int64)
    codes, widths = np.empty_like(rows), np.empty_like(rows)
    for r, row in enumerate(rows):
        spec = formats[int(row_format[r])]
        bits = int(spec["bits"])
        if spec["scheme"] == "sp2":
            magnitudes = sp2_magnitudes(bits)
            code_of = np.zeros(max(magnitudes) + 1, dtype=np.int64)
            code_of[magnitudes[::-1]] = np.arange(len(magnitudes))[::-1]  # the lowest code of each magnitude
            codes[r] = ((row < 0).astype(np.int64) << (bits - 1)) | code_of[np.abs(row)]
        else:
            codes[r] = row & ((1 << bits) - 1)
        widths[r] = bits
    return codes.ravel(), widths.ravel()


def _write_packed_indices(graph: IntGraph, name: str, value: np.ndarray, root: Path, formats: tuple[str, ...],
                          word_bits: int, record: Any) -> None:
    """Golden LUT indices (outputs of vq_encode nodes) also packed at their index width, as bin/hex."""
    producer = graph.producer(name)
    if producer is None or producer.op != "vq_encode":
        return
    bits = int(producer.attrs["index_bits"])
    if "bin" in formats:
        (root / f"golden/{name}.bin").write_bytes(pack_bits(value.astype(np.int64).ravel(), bits))
        record(f"golden/{name}.bin")
    if "hex" in formats:
        (root / f"golden/{name}.hex").write_text("\n".join(to_hex_lines(value.astype(np.int64).ravel(), bits,
                                                                          word_bits)) + "\n")
        record(f"golden/{name}.hex")


def _weight_codes(values: np.ndarray, encoding: str, bits: int, mantissa_bits: int = 0) -> np.ndarray:
    """Stored codes of integer weight values per their encoding (docs/export-format.md)."""
    v = values.astype(np.int64).ravel()
    if encoding == "esb":
        magnitudes = esb_magnitudes(bits - 1 - mantissa_bits, mantissa_bits)
        code_of = np.zeros(max(magnitudes) + 1, dtype=np.int64)
        code_of[magnitudes] = np.arange(len(magnitudes))
        return ((v < 0).astype(np.int64) << (bits - 1)) | code_of[np.abs(v)]
    if encoding == "bipolar":
        return (v > 0).astype(np.int64)
    if encoding == "midrise":
        return (v + (2**bits - 1)) // 2
    if encoding == "power_of_two":
        magnitude = np.abs(v)
        exponent = np.where(magnitude > 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) + 1, 0)
        sign = (v < 0).astype(np.int64)
        return (sign << (bits - 1)) | exponent
    return v & ((1 << bits) - 1)  # two's complement (and ternary: 2-bit two's complement)
