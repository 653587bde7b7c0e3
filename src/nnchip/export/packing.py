"""Bit packing of integer codes: a little-endian bit stream (.bin) and $readmemh words (.hex)."""

from __future__ import annotations

import numpy as np


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Codes (non-negative, < 2^bits) → bytes: element i occupies stream bits [i·bits, (i+1)·bits), LSB first."""
    values = codes.astype(np.uint64).ravel()
    bit_matrix = ((values[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)  # (N, bits)
    return np.packbits(bit_matrix.ravel(), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    weights = (1 << np.arange(bits, dtype=np.uint64))
    return (stream.reshape(count, bits).astype(np.uint64) * weights).sum(axis=1).astype(np.int64)


def to_hex_lines(codes: np.ndarray, bits: int, word_bits: int) -> list[str]:
    """Pack floor(word_bits / bits) codes per word, element 0 in the least significant bits; hex per line."""
    per_word = max(1, word_bits // bits)
    values = codes.astype(np.uint64).ravel()
    padded = np.zeros(-(-len(values) // per_word) * per_word, dtype=np.uint64)
    padded[: len(values)] = values
    words = np.zeros(len(padded) // per_word, dtype=object)
    for slot in range(per_word):
        words = words + (padded[slot::per_word].astype(object) << (slot * bits))
    digits = -(-word_bits // 4)
    return [format(int(w), f"0{digits}x") for w in words]


def _variable_stream(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The bit stream of codes of different widths: element i's `widths[i]` bits, LSB first, in order."""
    values, widths = codes.astype(np.uint64).ravel(), widths.astype(np.int64).ravel()
    top = int(widths.max()) if widths.size else 1
    bit_matrix = ((values[:, None] >> np.arange(top, dtype=np.uint64)) & 1).astype(np.uint8)  # (N, top)
    return bit_matrix[np.arange(top)[None, :] < widths[:, None]]


def pack_variable_bits(codes: np.ndarray, widths: np.ndarray) -> bytes:
    """Codes with per-element widths → bytes: the concatenated little-endian bit stream, zero-padded."""
    return np.packbits(_variable_stream(codes, widths), bitorder="little").tobytes()


def variable_hex_lines(codes: np.ndarray, widths: np.ndarray, word_bits: int) -> list[str]:
    """The variable-width bit stream cut into `word_bits` words (bit 0 of the stream in bit 0 of word 0)."""
    stream = _variable_stream(codes, widths)
    padded = np.zeros(-(-stream.size // word_bits) * word_bits, dtype=np.uint8)
    padded[: stream.size] = stream
    words = np.packbits(padded.reshape(-1, word_bits), axis=1, bitorder="little")  # (words, ceil(word_bits/8))
    digits = -(-word_bits // 4)
    return [format(int.from_bytes(word.tobytes(), "little"), f"0{digits}x") for word in words]
