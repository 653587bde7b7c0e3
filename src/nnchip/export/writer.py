"""`export(graph, directory, ...)`: manifest.json + one file per integer parameter + golden vectors.

Layout of an export directory (docs/export-format.md):
    manifest.json              versioned; tensors, nodes in topological order, every file with its SHA-256
    params/<node>.<param>.npy  integer parameters (int64 .npy)
    params/<node>.<param>.bin  weights packed little-endian at their exact bit width (format "bin")
    params/<node>.<param>.hex  $readmemh text, one word per line, `word_bits` wide (format "hex")
    params/<node>.<param>.coe  Xilinx COE, the same words (format "coe")
    params/<node>.<param>.mif  Intel MIF, the same words (format "mif")
    params/<node>.<param>.h    C header: values in the smallest stdint type + the same words (format "h")
    model.onnx                 integer-op ONNX model, bit-exact in onnxruntime (format "onnx", needs onnx)
    model_qdq.onnx             QDQ ONNX model for ecosystem tools, approximate (format "onnx-qdq", needs onnx)
    golden/<tensor>.npy        golden vectors: the input, every intermediate tensor and the outputs
    params/<node>.weight.{mask,nm_values,nm_index}.bin, .csr_*.npy   sparse weights (format "sparse")
    params/<node>.weight.nested_{values,index}.bin   nested multi-level sparsity: non-zeros ordered by level
                               (format "nested"; every level's weights are a prefix)
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
from nnchip.core.intspec import esb_magnitudes, sp2_magnitudes
from nnchip.export import sparse
from nnchip.export.packing import pack_bits, pack_variable_bits, to_hex_lines, variable_hex_lines
from nnchip.export.text_formats import to_c_header, to_coe, to_mif
from nnchip.lower.interpreter import run
from nnchip.lower.intgraph import IntGraph

MANIFEST_VERSION = 1
FORMATS = ("npy", "bin", "hex", "coe", "mif", "h", "sparse", "nested", "onnx", "onnx-qdq")
NESTED_PARAMS = ("weight_nested", "weight_keep")  # IntGraph-only: written as the "nested" format (lower/nested.py)
TEXT_WRITERS = {"coe": to_coe, "mif": to_mif}
ONNX_FILES = {"onnx": "model.onnx", "onnx-qdq": "model_qdq.onnx"}


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
    nested_nodes = [node for node in graph.nodes if "weight_nested" in node.params]
    if "nested" in formats and not nested_nodes:
        raise ConfigError("formats: 'nested' needs a model with nested sparsity levels (prune with prune.levels)")

    def record(relative: str) -> str:
        files[relative] = _sha256(root / relative)
        return relative

    nodes = []
    for node in graph.nodes:
        params: dict[str, Any] = {}
        for key, value in node.params.items():
            if key in NESTED_PARAMS:
                continue
            base = f"params/{node.name}.{key}"
            entry: dict[str, Any] = {"shape": list(value.shape), "dtype": "int64"}
            np.save(root / f"{base}.npy", value.astype(np.int64), allow_pickle=False)
            entry["npy"] = record(f"{base}.npy")
            if key == "weight" and node.attrs.get("weight_encoding") == "row_mixed":
                if "nested" in formats and "weight_nested" in node.params:
                    raise ConfigError(f"formats: nested cannot hold the row-mixed weight of {node.name} (rows of "
                                      "different widths in one prefix-ordered list)")
                if unsupported := sorted(set(formats) & {"coe", "mif", "h"}):
                    raise ConfigError(f"formats: {', '.join(unsupported)} cannot hold the row-mixed weight of "
                                      f"{node.name} (rows of different widths); use npy, bin and hex")
                codes, widths = _row_mixed_codes(value, node.params["row_format"], node.attrs["row_formats"])
                entry.update(bits=int(widths.max()), row_bits=[int(b) for b in widths[:: max(1, value[0].size)]],
                             density=sparse.density(value))
                if "bin" in formats:
                    (root / f"{base}.bin").write_bytes(pack_variable_bits(codes, widths))
                    entry["bin"] = record(f"{base}.bin")
                if "hex" in formats:
                    (root / f"{base}.hex").write_text("\n".join(variable_hex_lines(codes, widths, word_bits)) + "\n")
                    entry["hex"] = record(f"{base}.hex")
            elif key == "weight" or f"{key}_bits" in node.attrs:  # weights; LUT codebooks and tables
                bits = int(node.attrs.get(f"{key}_bits", 8))
                encoding = str(node.attrs.get(f"{key}_encoding", "twos_complement"))
                mantissa_bits = int(node.attrs.get(f"{key}_mantissa_bits", 0))
                codes = _weight_codes(value, encoding, bits, mantissa_bits)
                entry["bits"] = bits
                if "bin" in formats:
                    (root / f"{base}.bin").write_bytes(pack_bits(codes, bits))
                    entry["bin"] = record(f"{base}.bin")
                if "hex" in formats:
                    (root / f"{base}.hex").write_text("\n".join(to_hex_lines(codes, bits, word_bits)) + "\n")
                    entry["hex"] = record(f"{base}.hex")
                described = {"name": f"{node.name}.{key}", "shape": tuple(value.shape), "encoding": encoding}
                for fmt, writer in TEXT_WRITERS.items():
                    if fmt in formats:
                        (root / f"{base}.{fmt}").write_text(writer(codes, bits, word_bits, **described))
                        entry[fmt] = record(f"{base}.{fmt}")
                if "h" in formats:
                    (root / f"{base}.h").write_text(to_c_header(value, codes, bits, word_bits, **described))
                    entry["h"] = record(f"{base}.h")
                if key == "weight":
                    entry["density"] = sparse.density(value)
                    if "sparse" in formats and entry["density"] < 1.0:
                        entry["sparse"] = _write_sparse(root, base, value, bits, encoding, mantissa_bits, record)
                    if "nested" in formats and "weight_nested" in node.params:
                        entry["nested"] = _write_nested(root, base, node.params, node.attrs, bits, encoding,
                                                        mantissa_bits, record)
            params[key] = entry
        nodes.append({"name": node.name, "op": node.op, "inputs": node.inputs, "output": node.output,
                      "attrs": node.attrs, "params": params})
    manifest: dict[str, Any] = {
        "format": "nnchip-intgraph", "version": MANIFEST_VERSION, "inputs": graph.inputs, "outputs": graph.outputs,
        "tensors": {name: t.to_dict() for name, t in graph.tensors.items()}, "nodes": nodes, "meta": graph.meta,
        "packing": {"bin": "little-endian, element i in bits [i*b, (i+1)*b) of the stream, two's complement codes",
                    "hex": f"{word_bits}-bit words, element 0 in the least significant bits", "word_bits": word_bits,
                    "coe": "the .hex words, radix 16", "mif": "the .hex words, WIDTH=word_bits, DATA_RADIX=HEX",
                    "h": "values in the smallest stdint type (<id>[]) and the .hex words (<id>_words[])"},
        "weight_density": {n["name"]: n["params"]["weight"]["density"] for n in nodes
                           if "density" in n["params"].get("weight", {})},
    }
    if nested_nodes:
        manifest["sparsity_levels"] = {"levels": nested_nodes[0].attrs["sparsity_levels"],
                                       "level": nested_nodes[0].attrs["sparsity_level"]}
    onnx_models = {fmt: name for fmt, name in ONNX_FILES.items() if fmt in formats}
    if onnx_models:
        manifest["onnx"] = {fmt: record(_write_onnx(graph, root / name, fmt)) for fmt, name in onnx_models.items()}
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


def _write_onnx(graph: IntGraph, path: Path, fmt: str) -> str:
    """Write the ONNX model of `fmt` ("onnx": integer ops, "onnx-qdq"); onnx is imported only here."""
    if fmt == "onnx":
        from nnchip.export.onnx_integer import to_onnx_integer as convert
    else:
        from nnchip.export.onnx_qdq import to_onnx_qdq as convert
    path.write_bytes(convert(graph).SerializeToString())
    return path.name


def _write_sparse(root: Path, base: str, value: np.ndarray, bits: int, encoding: str, mantissa_bits: int,
                  record: Any) -> dict[str, Any]:
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
        (root / f"{base}.nm_values.bin").write_bytes(pack_bits(_weight_codes(values, encoding, bits,
                                                                             mantissa_bits), bits))
        (root / f"{base}.nm_index.bin").write_bytes(pack_bits(indices.ravel(), index_bits))
        out["nm"] = {"n": n, "m": m, "shape": list(values.shape), "value_bits": bits, "index_bits": index_bits,
                     "values": record(f"{base}.nm_values.bin"), "index": record(f"{base}.nm_index.bin")}
    return out


def _write_nested(root: Path, base: str, params: dict[str, np.ndarray], attrs: dict[str, Any], bits: int,
                  encoding: str, mantissa_bits: int, record: Any) -> dict[str, Any]:
    """Non-zeros of the densest level ordered by the level at which they first appear (export/sparse.py)."""
    values, index, counts = sparse.nested_order(params["weight_nested"], params["weight_keep"],
                                               len(attrs["sparsity_levels"]))
    level = int(attrs["sparsity_level"])
    if not np.array_equal(sparse.nested_prefix(values, index, counts[level], params["weight"].shape),
                          params["weight"]):
        raise NnchipError(f"{base}: the nested prefix of level {level} does not reproduce the weight")
    index_bits = sparse.nested_index_bits(params["weight"].size)
    (root / f"{base}.nested_values.bin").write_bytes(pack_bits(_weight_codes(values, encoding, bits, mantissa_bits),
                                                               bits))
    (root / f"{base}.nested_index.bin").write_bytes(pack_bits(index, index_bits))
    return {"layout": "im2col (C_out, K), C order; flat index = row·K + column",
            "order": "level of first appearance (kept at every level first, densest-only last), then index",
            "levels": list(attrs["sparsity_levels"]), "level": level, "counts": counts,
            "value_bits": bits, "index_bits": index_bits,
            "values": record(f"{base}.nested_values.bin"), "index": record(f"{base}.nested_index.bin")}


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
