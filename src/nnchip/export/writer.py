"""`export(graph, directory, ...)`: manifest.json + one file per integer parameter + golden vectors.

Layout of an export directory (docs/export-format.md):
    manifest.json              versioned; tensors, nodes in topological order, every file with its SHA-256
    params/<node>.<param>.npy  integer parameters (int64 .npy)
    params/<node>.<param>.bin  weights packed little-endian at their exact bit width (format "bin")
    params/<node>.<param>.hex  $readmemh text, one word per line, `word_bits` wide (format "hex")
    golden/<tensor>.npy        golden vectors: the input, every intermediate tensor and the outputs
    params/<node>.weight.{mask,nm_values,nm_index}.bin, .csr_*.npy   sparse weights (format "sparse")
Every weight entry records its `density` (fraction of non-zeros); older readers ignore the extra fields.
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
from nnchip.export import sparse
from nnchip.export.packing import pack_bits, to_hex_lines
from nnchip.lower.interpreter import run
from nnchip.lower.intgraph import IntGraph

MANIFEST_VERSION = 1
FORMATS = ("npy", "bin", "hex", "sparse")


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
            if key == "weight":
                bits = int(node.attrs.get("weight_bits", 8))
                encoding = node.attrs.get("weight_encoding", "twos_complement")
                codes = _weight_codes(value, encoding, bits)
                entry["bits"] = bits
                if "bin" in formats:
                    (root / f"{base}.bin").write_bytes(pack_bits(codes, bits))
                    entry["bin"] = record(f"{base}.bin")
                if "hex" in formats:
                    (root / f"{base}.hex").write_text("\n".join(to_hex_lines(codes, bits, word_bits)) + "\n")
                    entry["hex"] = record(f"{base}.hex")
                entry["density"] = sparse.density(value)
                if "sparse" in formats and entry["density"] < 1.0:
                    entry["sparse"] = _write_sparse(root, base, value, bits, encoding, record)
            params[key] = entry
        nodes.append({"name": node.name, "op": node.op, "inputs": node.inputs, "output": node.output,
                      "attrs": node.attrs, "params": params})
    manifest: dict[str, Any] = {
        "format": "nnchip-intgraph", "version": MANIFEST_VERSION, "inputs": graph.inputs, "outputs": graph.outputs,
        "tensors": {name: t.to_dict() for name, t in graph.tensors.items()}, "nodes": nodes, "meta": graph.meta,
        "packing": {"bin": "little-endian, element i in bits [i*b, (i+1)*b) of the stream, two's complement codes",
                    "hex": f"{word_bits}-bit words, element 0 in the least significant bits"},
        "weight_density": {n["name"]: n["params"]["weight"]["density"] for n in nodes if "weight" in n["params"]},
    }
    if golden_inputs is not None:
        (root / "golden").mkdir()
        result = run(graph, golden_inputs)
        golden = {}
        for name, value in result.tensors.items():
            if isinstance(value, torch.Tensor):
                np.save(root / f"golden/{name}.npy", value.numpy().astype(np.int64), allow_pickle=False)
                golden[name] = record(f"golden/{name}.npy")
        manifest["golden"] = {"samples": int(golden_inputs.shape[0]), "tensors": golden}
    manifest["files"] = files
    return manifest


def _write_sparse(root: Path, base: str, value: np.ndarray, bits: int, encoding: str, record: Any) -> dict[str, Any]:
    """Bitmask, CSR and (when the weight is N:M sparse) N:M values + indices of a weight (export/sparse.py)."""
    (root / f"{base}.mask.bin").write_bytes(pack_bits(sparse.bitmask(value), 1))
    out: dict[str, Any] = {"layout": "im2col (C_out, K), C order", "bitmask": {"bin": record(f"{base}.mask.bin")}}
    csr = {}
    for name, array in zip(("values", "columns", "row_pointers"), sparse.csr(value), strict=True):
        np.save(root / f"{base}.csr_{name}.npy", array, allow_pickle=False)
        csr[name] = record(f"{base}.csr_{name}.npy")
    out["csr"] = csr
    pattern = sparse.detect_nm(value)
    if pattern is not None:
        n, m = pattern
        values, indices = sparse.nm_compress(value, n, m)
        if not np.array_equal(sparse.nm_decompress(values, indices, m, value.shape), value):
            raise NnchipError(f"{base}: N:M compression does not reproduce the weight")
        index_bits = sparse.index_bits(m)
        (root / f"{base}.nm_values.bin").write_bytes(pack_bits(_weight_codes(values, encoding, bits),
                                                               bits))
        (root / f"{base}.nm_index.bin").write_bytes(pack_bits(indices.ravel(), index_bits))
        out["nm"] = {"n": n, "m": m, "shape": list(values.shape), "value_bits": bits, "index_bits": index_bits,
                     "values": record(f"{base}.nm_values.bin"), "index": record(f"{base}.nm_index.bin")}
    return out


def _weight_codes(values: np.ndarray, encoding: str, bits: int) -> np.ndarray:
    """Stored codes of integer weight values per their encoding (docs/export-format.md)."""
    v = values.astype(np.int64).ravel()
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
