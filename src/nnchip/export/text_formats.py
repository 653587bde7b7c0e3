"""Memory-initialisation text formats of one integer parameter: Xilinx COE, Intel MIF and a C header.

COE and MIF hold the same words as the $readmemh .hex file (packing.to_hex_lines: floor(word_bits / b) codes
per word, element 0 in the least significant bits, two's complement codes); the C header holds the values
in the smallest fitting stdint type and the same packed words (docs/export-format.md).
"""

from __future__ import annotations

import re

import numpy as np

from nnchip.export.packing import to_hex_lines


def _header_comment(name: str, shape: tuple[int, ...], bits: int, encoding: str, word_bits: int) -> str:
    per_word = max(1, word_bits // bits)
    return (f"nnchip {name}: shape {list(shape)}, {int(np.prod(shape))} {bits}-bit {encoding} codes, {per_word} per "
            f"{word_bits}-bit word, element 0 in the least significant bits")


def to_coe(codes: np.ndarray, bits: int, word_bits: int, *, name: str, shape: tuple[int, ...], encoding: str) -> str:
    """Xilinx COE: radix 16, one word per entry, comma-separated, the last ended by ';'."""
    words = to_hex_lines(codes, bits, word_bits)
    return (f"; {_header_comment(name, shape, bits, encoding, word_bits)}\n"
            "memory_initialization_radix=16;\nmemory_initialization_vector=\n" + ",\n".join(words) + ";\n")


def to_mif(codes: np.ndarray, bits: int, word_bits: int, *, name: str, shape: tuple[int, ...], encoding: str) -> str:
    """Intel MIF: WIDTH = word_bits, DEPTH = number of words, unsigned decimal addresses, hex data."""
    words = to_hex_lines(codes, bits, word_bits)
    body = "".join(f"    {address} : {word};\n" for address, word in enumerate(words))
    return (f"-- {_header_comment(name, shape, bits, encoding, word_bits)}\n"
            f"WIDTH={word_bits};\nDEPTH={len(words)};\nADDRESS_RADIX=UNS;\nDATA_RADIX=HEX;\n"
            f"CONTENT BEGIN\n{body}END;\n")


def c_value_type(values: np.ndarray) -> str:
    """The smallest <stdint.h> type that holds every value."""
    low, high = int(values.min()), int(values.max())
    for bits in (8, 16, 32, 64):
        if low >= 0 and high < 2**bits:
            return f"uint{bits}_t"
        if -(2 ** (bits - 1)) <= low and high < 2 ** (bits - 1):
            return f"int{bits}_t"
    raise ValueError(f"values [{low}, {high}] do not fit 64 bits")


def c_identifier(name: str) -> str:
    identifier = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return identifier if not identifier[0].isdigit() else f"_{identifier}"


def to_c_header(values: np.ndarray, codes: np.ndarray, bits: int, word_bits: int, *, name: str,
                shape: tuple[int, ...], encoding: str) -> str:
    """`static const <type> <id>[N]` (values in C order) and `<id>_words[]` (the .hex words), with macros
    <ID>_NDIM, _SHAPE, _SIZE, _BITS, _ENCODING, _WORD_BITS, _WORDS."""
    ident = c_identifier(name)
    macro = f"NNCHIP_{ident.upper()}"
    flat = values.astype(np.int64).ravel()
    words = to_hex_lines(codes, bits, word_bits)
    suffix = "ull" if word_bits == 64 else "u"

    def rows(items: list[str]) -> str:
        return ",\n".join("    " + ", ".join(items[i:i + 16]) for i in range(0, len(items), 16))

    return (f"/* {_header_comment(name, shape, bits, encoding, word_bits)} */\n"
            f"#ifndef {macro}_H\n#define {macro}_H\n\n#include <stdint.h>\n\n"
            f"#define {macro}_NDIM {len(shape)}\n"
            f"#define {macro}_SHAPE {{{', '.join(str(d) for d in shape)}}}\n"
            f"#define {macro}_SIZE {flat.size}\n#define {macro}_BITS {bits}\n"
            f"#define {macro}_ENCODING \"{encoding}\"\n#define {macro}_WORD_BITS {word_bits}\n"
            f"#define {macro}_WORDS {len(words)}\n\n"
            f"static const {c_value_type(flat)} {ident}[{flat.size}] = {{\n{rows([str(v) for v in flat])}\n}};\n\n"
            f"static const uint{word_bits}_t {ident}_words[{len(words)}] = {{\n"
            f"{rows([f'0x{w}{suffix}' for w in words])}\n}};\n\n#endif /* {macro}_H */\n")
