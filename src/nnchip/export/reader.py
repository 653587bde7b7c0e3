"""Pure-numpy reader of an nnchip export: runs the integer model from its files alone (no torch, nothing
from nnchip.lower) — the third, independent implementation of the integer contract.

    model = load_export("out/cnn")          # checks the manifest, every file's SHA-256, paths
    tensors = model.run(int_input)          # every tensor by name, int64
    tensors = model.run(int_input, level=2) # nested sparsity: weights of level 2 from the "nested" files
    w = model.read_param("conv1", "weight", "mif")   # a parameter read back from .npy/.bin/.hex/.coe/.mif/.h
    report = verify("out/cnn")              # replays the golden vectors: {tensor: (matched, total)}
This file imports only the standard library and numpy, so it can be copied next to a testbench.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_VERSIONS = (1,)
INT31_MAX = 2**31 - 1


class ExportError(ValueError):
    """A corrupt, incomplete or tampered export; the message names the file."""


# ---- integer primitives (docs/integer-semantics.md §1, §5) -------------------------------------------
def round_shift(v: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    n = np.asarray(n, dtype=np.int64)
    half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0)
    return np.right_shift(v + half, n)


def requantize(acc: np.ndarray, m0: np.ndarray, n: np.ndarray, in_zp: int, out_zp: int, lo: int, hi: int) -> np.ndarray:
    return np.clip(round_shift((acc - in_zp) * m0, n) + out_zp, lo, hi)


def isqrt_exact(v: np.ndarray) -> np.ndarray:
    return np.array([math.isqrt(int(x)) for x in v.ravel()], dtype=np.int64).reshape(v.shape)


def exp_shift(x: np.ndarray, x0: int, n: int) -> np.ndarray:
    t = x + (x >> 1) - (x >> 4)
    t = np.maximum(t, n * x0)
    q = t // x0
    r = t - x0 * q
    return np.maximum(np.left_shift(r - 2 * x0, n - q) >> 1, 0)


def _channel(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


# ---- the model ---------------------------------------------------------------------------------------
class ExportedModel:
    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.params: dict[str, dict[str, np.ndarray]] = {
            node["name"]: {key: _load_npy(directory, entry["npy"]) for key, entry in node["params"].items()}
            for node in manifest["nodes"]
        }

    def run(self, inputs: np.ndarray | list[np.ndarray], level: int | None = None) -> dict[str, np.ndarray]:
        """Every tensor by name; `level`: nested sparsity level whose weights replace the dense files'."""
        feeds = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        values = {name: np.asarray(v, dtype=np.int64) for name, v in zip(self.manifest["inputs"], feeds, strict=True)}
        batch = feeds[0].shape[0]
        params = self.params if level is None else self._level_params(level)
        for node in self.manifest["nodes"]:
            args = [values[i] for i in node["inputs"]]
            values[node["output"]] = self._run_node(node, params[node["name"]], args, batch)
        return values

    def nested_weight(self, node_name: str, level: int) -> np.ndarray:
        """The integer weight of `node_name` at nested sparsity level `level`: the first counts[level] entries of
        its nested_values/nested_index files (docs/export-format.md "Nested sparsity")."""
        node = next((n for n in self.manifest["nodes"] if n["name"] == node_name), None)
        if node is None or "nested" not in node["params"].get("weight", {}):
            raise ExportError(f"node {node_name} has no nested weight (export with format 'nested')")
        entry = node["params"]["weight"]
        nested, counts = entry["nested"], entry["nested"]["counts"]
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < len(counts):
            raise ExportError(f"sparsity level {level!r} is not one of 0..{len(counts) - 1}")
        count = int(counts[level])
        codes = unpack_stream(_safe_path(self.directory, nested["values"]).read_bytes(), nested["value_bits"], count)
        index = unpack_stream(_safe_path(self.directory, nested["index"]).read_bytes(), nested["index_bits"], count)
        encoding = node["attrs"].get("weight_encoding", "twos_complement")
        mantissa_bits = int(node["attrs"].get("weight_mantissa_bits", 0))
        shape = tuple(entry["shape"])
        weight = np.zeros(int(np.prod(shape)), dtype=np.int64)
        weight[index] = codes_to_values(codes, encoding, int(nested["value_bits"]), mantissa_bits)
        return weight.reshape(shape)

    def _level_params(self, level: int) -> dict[str, dict[str, np.ndarray]]:
        nested = [n["name"] for n in self.manifest["nodes"] if "nested" in n["params"].get("weight", {})]
        if not nested:
            raise ExportError(f"{self.directory}: no nested sparsity levels (export with format 'nested')")
        params = dict(self.params)
        for name in nested:
            params[name] = {**self.params[name], "weight": self.nested_weight(name, level)}
        return params

    def read_param(self, node_name: str, key: str, fmt: str) -> np.ndarray:
        """The integer values of parameter `key` of node `node_name` as stored in its `fmt` file."""
        node = next((n for n in self.manifest["nodes"] if n["name"] == node_name), None)
        if node is None or key not in node["params"]:
            raise ExportError(f"no parameter {node_name}.{key} in the manifest")
        entry = node["params"][key]
        if fmt not in entry:
            raise ExportError(f"parameter {node_name}.{key} has no {fmt!r} file (formats: "
                              f"{', '.join(k for k in ('npy', *TEXT_FORMATS) if k in entry)})")
        if fmt == "npy":
            return _load_npy(self.directory, entry["npy"])
        path = _safe_path(self.directory, entry[fmt])
        shape, bits = tuple(entry["shape"]), int(entry["bits"])
        count = int(np.prod(shape)) if shape else 1
        encoding = node["attrs"].get("weight_encoding", "twos_complement") if key == "weight" else "twos_complement"
        if fmt == "h":
            return parse_c_header(path.read_text()).reshape(shape)
        word_bits = int(self.manifest["packing"].get("word_bits", 32))
        if encoding == "row_mixed":
            if fmt == "bin":
                stream = np.unpackbits(np.frombuffer(path.read_bytes(), dtype=np.uint8), bitorder="little")
            else:
                stream = words_to_stream(parse_hex(path.read_text()), word_bits)
            row_format = _load_npy(self.directory, node["params"]["row_format"]["npy"])
            return row_mixed_values(stream, row_format, node["attrs"]["row_formats"], shape)
        if fmt == "bin":
            codes = unpack_stream(path.read_bytes(), bits, count)
        else:
            words = {"hex": parse_hex, "coe": parse_coe, "mif": parse_mif}[fmt](path.read_text())
            codes = words_to_codes(words, bits, word_bits, count)
        mantissa_bits = int(node["attrs"].get("weight_mantissa_bits", 0))
        return codes_to_values(codes, encoding, bits, mantissa_bits).reshape(shape)

    def _tensor(self, name: str) -> dict[str, Any]:
        return self.manifest["tensors"][name]

    def _run_node(self, node: dict[str, Any], p: dict[str, np.ndarray], args: list[Any], batch: int) -> Any:
        op, a = node["op"], node["attrs"]
        if op == "constant":
            return p["value"]
        if op == "identity":
            return args[0]
        if op == "layout":
            return _layout(a, args[0], batch)
        if op == "requant":
            return requantize(args[0], p["multiplier"], p["shift"], a["in_zero_point"], a["out_zero_point"], a["lo"],
                              a["hi"])
        if op == "conv2d":
            acc = _conv2d(args[0] - a["in_zero_point"], p["weight"], a) + _channel(p["bias"], 4, 1)
            return requantize(acc, _channel(p["multiplier"], 4, 1), _channel(p["shift"], 4, 1), 0,
                              a["out_zero_point"], a["lo"], a["hi"])
        if op == "linear":
            acc = np.matmul(args[0] - a["in_zero_point"], p["weight"].T) + p["bias"]
            return requantize(acc, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])
        if op == "matmul":
            acc = np.matmul(args[0], args[1])
            return requantize(acc, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])
        if op == "add":
            frac = a["frac_bits"]
            aligned = [round_shift((x - z) * int(m), int(n) - frac)
                       for x, z, m, n in zip(args, a["zero_points"], p["multiplier"], p["shift"], strict=True)]
            return np.clip(round_shift(aligned[0] + aligned[1], frac) + a["out_zero_point"], a["lo"], a["hi"])
        if op == "mean":
            x = args[0] - a["in_zero_point"]
            total = x.sum(axis=tuple(a["dims"]), keepdims=True)
            target = self._tensor(node["output"])["shape"]
            total = total.reshape((x.shape[0], *target[1:]))
            return requantize(total, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])
        if op == "avgpool":
            windows = _windows(args[0] - a["in_zero_point"], a["kernel"], a["stride"])
            total = windows.sum(axis=(-2, -1))
            return requantize(total, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])
        if op == "maxpool":
            x = args[0]
            pad = a["padding"]
            if any(pad):  # padded positions hold the type's minimum, never the zero point
                t = self._tensor(node["inputs"][0])
                qmin = -(2 ** (t["bits"] - 1)) + (1 if t["narrow"] else 0) if t["signed"] else 0
                x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=qmin)
            return _windows(x, a["kernel"], a["stride"]).max(axis=(-2, -1))
        if op == "concat":
            parts = [requantize(x, int(m), int(n), z, a["out_zero_point"], a["lo"], a["hi"])
                     for x, z, m, n in zip(args, a["zero_points"], p["multiplier"], p["shift"], strict=True)]
            return np.concatenate(parts, axis=a["dim"])
        if op == "softmax" and a["mode"] == "table":
            return _table_softmax(args[0], p["table"], a["out_bits"], a["dim"])
        if op == "softmax":
            x = args[0]
            e = exp_shift(x - x.max(axis=a["dim"], keepdims=True), a["x0"], a["n"])
            total = np.clip(e.sum(axis=a["dim"], keepdims=True), 1, INT31_MAX)
            return (e * (INT31_MAX // total)) >> (32 - a["out_bits"])
        if op == "lut":
            return p["table"][args[0] - a["in_qmin"]]
        if op == "shift_gelu":
            y = _shift_gelu(args[0] - a["in_zero_point"], a["x0"], a["n"], a["sigma_bits"])
            return requantize(y, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])
        if op == "layernorm":
            return _layernorm(args[0], p, a)
        if op == "token_select":
            return _token_select(args[0] - a["in_zero_point"], args[1], p, a)
        if op == "vq_encode":
            return _vq_encode(args[0], p["codebook"], a)
        if op == "lut_gemm":
            return _lut_gemm(args[0], p, a)
        raise ExportError(f"node {node['name']}: unknown op {op!r}")


def _windows(x: np.ndarray, kernel: list[int], stride: list[int]) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x, tuple(kernel), axis=(2, 3))  # (B, C, H', W', kh, kw)
    return view[:, :, :: stride[0], :: stride[1]]


def _conv2d(x: np.ndarray, w: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    """Integer convolution by im2col + int64 matmul; zero padding (x is already minus its zero point)."""
    ph, pw = a["padding"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    groups = a["groups"]
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_c, in_per_group, kh, kw = w.shape
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    b, _, oh, ow = view.shape[:4]
    out = np.empty((b, out_c, oh, ow), dtype=np.int64)
    per_group = out_c // groups
    for g in range(groups):
        cols = view[:, g * in_per_group:(g + 1) * in_per_group]  # (B, Cg, OH, OW, kh, kw)
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(b, oh, ow, -1)
        weights = w[g * per_group:(g + 1) * per_group].reshape(per_group, -1)
        out[:, g * per_group:(g + 1) * per_group] = np.matmul(cols, weights.T).transpose(0, 3, 1, 2)
    return out


def _shift_gelu(x: np.ndarray, x0: int, n: int, sigma_bits: int) -> np.ndarray:
    x_max = np.maximum(x.max(axis=-1, keepdims=True), 0)
    e1 = exp_shift(x - x_max, x0, n)
    e2 = exp_shift(np.broadcast_to(-x_max, x.shape), x0, n)
    total = np.clip(e1 + e2, 1, INT31_MAX)
    return x * ((e1 * (INT31_MAX // total)) >> (32 - sigma_bits))


def _table_softmax(x: np.ndarray, table: np.ndarray, out_bits: int, dim: int) -> np.ndarray:
    e = table[np.minimum(x.max(axis=dim, keepdims=True) - x, table.size - 1)]
    total = np.maximum(e.sum(axis=dim, keepdims=True), 1)
    shift = 52 - (out_bits - 1)
    return (e * (2**52 // total) + (1 << (shift - 1))) >> shift


def _layernorm(x: np.ndarray, p: dict[str, np.ndarray], a: dict[str, Any]) -> np.ndarray:
    c = x.shape[-1]
    total = x.sum(axis=-1, keepdims=True)
    if a["sqrt_mode"] == "ivit":
        y = x - (2 * total + c) // (2 * c)
        var = (y * y).sum(axis=-1, keepdims=True)
        std = np.full_like(var, 2**16)
        for _ in range(10):
            std = (std + var // np.maximum(std, 1)) >> 1
    else:
        y = c * x - total
        std = isqrt_exact((y * y).sum(axis=-1, keepdims=True))
    std = np.maximum(std, 1)
    z = (y * (INT31_MAX // std)) >> 1
    sign = np.where(p["negate"].astype(bool), -1, 1)
    z = sign * z + sign * p["beta"]
    return requantize(z, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])


def _token_select(x: np.ndarray, probs: np.ndarray, p: dict[str, np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """Token pruning: keep the class token and the top `keep` tokens by Σ_h probs[:, h, 0, j] (ties to the lower
    j, kept in index order), fold the rest into div_floor(2·Σ w·x + D, 2·D), D = Σ w (w = 1 if D = 0)."""
    keep = a["keep"]
    scores = probs[:, :, 0, 1:].sum(axis=1)  # (B, N)
    order = np.argsort(-scores, axis=1, kind="stable")
    kept = np.sort(order[:, :keep], axis=1)
    dropped = np.ones(scores.shape, dtype=bool)
    np.put_along_axis(dropped, kept, False, axis=1)
    weights = np.where(dropped, scores, 0)
    weights = np.where(dropped & (weights.sum(axis=1, keepdims=True) == 0), 1, weights)
    rest = x[:, 1:]
    total = (weights[:, :, None] * rest).sum(axis=1, keepdims=True)  # (B, 1, C)
    count = weights.sum(axis=1).reshape(-1, 1, 1)
    package = (2 * total + count) // (2 * count)
    selected = np.concatenate([x[:, :1], np.take_along_axis(rest, kept[:, :, None], axis=1), package], axis=1)
    return requantize(selected, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])


def _vq_encode(x: np.ndarray, codebook: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    """Nearest centroid per sub-vector (integer distance; ties -> lowest index, as np.argmin)."""
    if a["layer"] == "conv2d":  # im2col (B, OH, OW, C_in·k_h·k_w), channel-major, padded with pad_value
        ph, pw = a["padding"]
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=a["pad_value"])
        (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
        span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        view = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
        x = view.transpose(0, 2, 3, 1, 4, 5).reshape(*view.shape[:1], *view.shape[2:4], -1)
    c, k, v = codebook.shape
    groups = x.reshape(*x.shape[:-1], c, 1, v)  # (..., C, 1, v)
    distance = np.zeros((*x.shape[:-1], c, k), dtype=np.int64)
    for j in range(v):
        diff = groups[..., j] - codebook[:, :, j]  # (..., C, K)
        if a["metric"] == "l2":
            distance += diff * diff
        elif a["metric"] == "l1":
            distance += np.abs(diff)
        elif a["metric"] == "chebyshev":
            distance = np.maximum(distance, np.abs(diff))
        else:
            raise ExportError(f"vq_encode: unknown metric {a['metric']!r}")
    return np.argmin(distance, axis=-1).astype(np.int64)


def _lut_gemm(index: np.ndarray, p: dict[str, np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """acc = Σ_c table[c, idx_c] + bias, requantized per output channel."""
    table = p["table"]  # (C, K, M)
    acc = table[np.arange(table.shape[0]), index].sum(axis=-2) + p["bias"]  # (..., M)
    if a["layer"] == "conv2d":
        acc = acc.transpose(0, 3, 1, 2)
        return requantize(acc, _channel(p["multiplier"], 4, 1), _channel(p["shift"], 4, 1), 0, a["out_zero_point"],
                          a["lo"], a["hi"])
    return requantize(acc, p["multiplier"], p["shift"], 0, a["out_zero_point"], a["lo"], a["hi"])


def _layout(a: dict[str, Any], x: Any, batch: int) -> Any:
    def decode(value: Any) -> Any:
        if value == "batch":
            return batch
        if isinstance(value, dict) and "slice" in value:
            return slice(*value["slice"])
        if isinstance(value, dict) and value.get("ellipsis"):
            return Ellipsis
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    fn, args, kwargs = a["fn"], [decode(v) for v in a["args"]], {k: decode(v) for k, v in a["kwargs"].items()}
    ndim = x.ndim if isinstance(x, np.ndarray) else 0
    if fn == "getitem":
        index = args[0]
        return x[tuple(index) if isinstance(index, list) else index]
    if fn == "reshape":
        shape = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        return x.reshape(shape)
    if fn == "flatten":
        start = (args[0] if args else kwargs.get("start_dim", 0)) % ndim
        end = (args[1] if len(args) > 1 else kwargs.get("end_dim", -1)) % ndim
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])
    if fn == "unflatten":
        dim = args[0] % ndim
        return x.reshape(*x.shape[:dim], *args[1], *x.shape[dim + 1:])
    if fn == "transpose":
        return np.swapaxes(x, args[0], args[1])
    if fn == "permute":
        axes = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        return np.transpose(x, axes)
    if fn == "expand":
        sizes = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        return np.broadcast_to(x, tuple(s if s != -1 else x.shape[i] for i, s in enumerate(sizes)))
    if fn == "squeeze":
        return np.squeeze(x, axis=args[0]) if args else np.squeeze(x)
    if fn == "unsqueeze":
        return np.expand_dims(x, args[0])
    if fn == "unbind":
        dim = args[0] if args else kwargs.get("dim", 0)
        return [np.take(x, i, axis=dim) for i in range(x.shape[dim])]
    raise ExportError(f"layout function {fn!r} is not supported by the numpy reader")


# ---- parameter files (docs/export-format.md, "Packed weights") ----------------------------------------
TEXT_FORMATS = ("bin", "hex", "coe", "mif", "h")


def unpack_stream(data: bytes, bits: int, count: int) -> np.ndarray:
    """Codes of a little-endian bit stream: element i in stream bits [i·bits, (i+1)·bits), bit 0 of byte 0 first."""
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    return (stream.reshape(count, bits).astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=1)


def words_to_codes(words: list[int], bits: int, word_bits: int, count: int) -> np.ndarray:
    """floor(word_bits / bits) codes per word, element 0 in the least significant bits."""
    per_word = max(1, word_bits // bits)
    mask = (1 << bits) - 1
    codes = [(word >> (slot * bits)) & mask for word in words for slot in range(per_word)]
    if len(codes) < count:
        raise ExportError(f"{len(words)} words hold fewer than {count} codes")
    return np.array(codes[:count], dtype=np.int64)


def words_to_stream(words: list[int], word_bits: int) -> np.ndarray:
    """The bit stream of words cut from it (bit 0 of the stream = bit 0 of word 0)."""
    return np.array([(word >> i) & 1 for word in words for i in range(word_bits)], dtype=np.uint8)


def esb_magnitudes(exponent_bits: int, mantissa_bits: int) -> np.ndarray:
    """Magnitude of each ESB code without its sign: E = 0 -> M, E >= 1 -> (2^m + M)·2^(E−1)."""
    m = mantissa_bits
    return np.array([mantissa if exponent == 0 else (2**m + mantissa) << (exponent - 1)
                     for exponent in range(2**exponent_bits) for mantissa in range(2**m)], dtype=np.int64)


def sp2_magnitudes(bits: int) -> np.ndarray:
    """Magnitude of each SP2 code without its sign (fields i1: floor(b/2) bits, i2: the rest)."""
    m1 = bits // 2
    m2 = bits - 1 - m1
    top = 2**m1 - 1
    t1 = [0] + [2 ** (top - i) for i in range(1, 2**m1)]
    t2 = [0] + [2 ** (top - i) for i in range(1, 2**m2)]
    return np.array([t1[i1] + t2[i2] for i1 in range(2**m1) for i2 in range(2**m2)], dtype=np.int64)


def row_mixed_values(stream: np.ndarray, row_format: np.ndarray, formats: list[dict[str, Any]],
                     shape: tuple[int, ...]) -> np.ndarray:
    """Rows packed one after another, each at its format's width (docs/export-format.md)."""
    per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    rows, offset = [], 0
    for f in row_format.tolist():
        bits = int(formats[f]["bits"])
        chunk = stream[offset:offset + bits * per_row].reshape(per_row, bits).astype(np.int64)
        offset += bits * per_row
        codes = (chunk << np.arange(bits, dtype=np.int64)).sum(axis=1)
        if formats[f]["scheme"] == "sp2":
            magnitude = sp2_magnitudes(bits)[codes & ((1 << (bits - 1)) - 1)]
            rows.append(np.where(codes >> (bits - 1) == 1, -magnitude, magnitude))
        else:
            rows.append(codes_to_values(codes, "twos_complement", bits))
    return np.stack(rows).reshape(shape)


def codes_to_values(codes: np.ndarray, encoding: str, bits: int, mantissa_bits: int = 0) -> np.ndarray:
    """Stored code -> integer value (docs/integer-semantics.md §4)."""
    if encoding == "esb":
        magnitude = esb_magnitudes(bits - 1 - mantissa_bits, mantissa_bits)[codes & ((1 << (bits - 1)) - 1)]
        return np.where(codes >> (bits - 1) == 1, -magnitude, magnitude)
    if encoding == "bipolar":
        return np.where(codes > 0, 1, -1).astype(np.int64)
    if encoding == "midrise":
        return 2 * codes - (2**bits - 1)
    if encoding == "power_of_two":
        exponent = codes & ((1 << (bits - 1)) - 1)
        magnitude = np.where(exponent > 0, np.left_shift(np.int64(1), np.maximum(exponent - 1, 0)), 0)
        return np.where(codes >> (bits - 1) == 1, -magnitude, magnitude)
    return np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)  # two's complement, ternary


def parse_hex(text: str) -> list[int]:
    """$readmemh words, one per line (// comments and blank lines ignored)."""
    return [int(line, 16) for line in (raw.split("//")[0].strip() for raw in text.splitlines()) if line]


def parse_coe(text: str) -> list[int]:
    """Xilinx COE: memory_initialization_radix (2, 10 or 16) and memory_initialization_vector."""
    body = "\n".join(line.split(";", 1)[0] if line.lstrip().startswith(";") else line for line in text.splitlines())
    radix = re.search(r"memory_initialization_radix\s*=\s*(\d+)\s*;", body, re.IGNORECASE)
    vector = re.search(r"memory_initialization_vector\s*=\s*([^;]*);", body, re.IGNORECASE)
    if radix is None or vector is None:
        raise ExportError("COE file without memory_initialization_radix/memory_initialization_vector")
    return [int(token, int(radix.group(1))) for token in re.split(r"[\s,]+", vector.group(1)) if token]


def parse_mif(text: str) -> list[int]:
    """Intel MIF: DEPTH, ADDRESS_RADIX, DATA_RADIX and `address : value;` lines (ranges `[a..b] : v;` too)."""
    text = re.sub(r"--[^\n]*", "", text)
    radixes = {"HEX": 16, "UNS": 10, "DEC": 10, "BIN": 2, "OCT": 8}
    fields = {key.upper(): value.strip() for key, value in re.findall(r"(\w+)\s*=\s*(\w+)\s*;", text)}
    content = re.search(r"CONTENT\s+BEGIN(.*?)END\s*;", text, re.IGNORECASE | re.DOTALL)
    if content is None or "DEPTH" not in fields:
        raise ExportError("MIF file without DEPTH or CONTENT BEGIN ... END;")
    address_radix = radixes[fields.get("ADDRESS_RADIX", "HEX").upper()]
    data_radix = radixes[fields.get("DATA_RADIX", "HEX").upper()]
    words = [0] * int(fields["DEPTH"])
    for address, value in re.findall(r"([\w\[\]\.]+)\s*:\s*(\w+)\s*;", content.group(1)):
        if address.startswith("["):
            first, last = (int(a, address_radix) for a in address.strip("[]").split(".."))
        else:
            first = last = int(address, address_radix)
        for index in range(first, last + 1):
            words[index] = int(value, data_radix)
    return words


def parse_c_header(text: str) -> np.ndarray:
    """The values array of an nnchip C header: the first `static const <int type> <id>[N] = {...};`."""
    match = re.search(r"static\s+const\s+u?int\d+_t\s+\w+\[(\d+)\]\s*=\s*\{([^}]*)\}", text)
    if match is None:
        raise ExportError("C header without a `static const` integer array")
    values = np.array([int(v) for v in re.split(r"[\s,]+", match.group(2)) if v], dtype=np.int64)
    if values.size != int(match.group(1)):
        raise ExportError(f"C header array declares {match.group(1)} values but holds {values.size}")
    return values


# ---- loading and verification ------------------------------------------------------------------------
def _safe_path(directory: Path, relative: str) -> Path:
    path = (directory / relative).resolve()
    if directory.resolve() not in path.parents:
        raise ExportError(f"file name {relative!r} escapes the export directory")
    return path


def _load_npy(directory: Path, relative: str) -> np.ndarray:
    path = _safe_path(directory, relative)
    try:
        return np.load(path, allow_pickle=False).astype(np.int64)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable ({type(exc).__name__})") from None


def load_export(directory: str | Path) -> ExportedModel:
    root = Path(directory)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{manifest_path}: corrupt JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "nnchip-intgraph":
        raise ExportError(f"{manifest_path}: not an nnchip export manifest")
    if manifest.get("version") not in SUPPORTED_VERSIONS:
        raise ExportError(f"{manifest_path}: unsupported version {manifest.get('version')!r}")
    for key in ("inputs", "outputs", "tensors", "nodes", "files"):
        if key not in manifest:
            raise ExportError(f"{manifest_path}: missing field {key!r}")
    for relative, digest in manifest["files"].items():
        path = _safe_path(root, relative)
        if not path.is_file():
            raise ExportError(f"{path}: missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ExportError(f"{path}: SHA-256 mismatch (altered or corrupt)")
    return ExportedModel(root, manifest)


def verify(directory: str | Path) -> dict[str, tuple[int, int]]:
    """Replay the golden input through the reader; (matched, total) elements for every golden tensor."""
    model = load_export(directory)
    golden = model.manifest.get("golden")
    if not golden:
        raise ExportError(f"{directory}: the export has no golden vectors")
    expected = {name: _load_npy(model.directory, rel) for name, rel in golden["tensors"].items()}
    produced = model.run([expected[name] for name in model.manifest["inputs"]])
    report = {}
    for name, want in expected.items():
        got = produced.get(name)
        if got is None or np.shape(got) != want.shape:
            report[name] = (0, int(want.size))
        else:
            report[name] = (int((np.asarray(got) == want).sum()), int(want.size))
    return report
