"""Integer number formats: bit-width, signedness, narrow range, and how codes are stored (encoding)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nnchip.core.errors import ConfigError

MAX_BITS = 16  # quantized tensors; accumulators have their own, wider, declared width


class Encoding(StrEnum):
    """How a stored code maps to the integer value that takes part in arithmetic.

    TWOS_COMPLEMENT  value = code as a two's complement integer of `bits` bits
    BIPOLAR          1 bit: code 0 -> -1, code 1 -> +1
    TERNARY          2 bits, two's complement restricted to {-1, 0, +1}
    MIDRISE          value = 2*code - (2^bits - 1): odd integers, no zero level (DoReFa-style weights)
    POWER_OF_TWO     code = sign bit (MSB) | exponent field; exponent field 0 -> value 0,
                     e >= 1 -> value ±2^(e-1)
    ESB              code = sign bit (MSB) | exponent field E | m-bit mantissa field M (elastic significant
                     bits): E = 0 -> ±M, E >= 1 -> ±(2^m + M)·2^(E-1)  (see `esb_magnitudes`)
    ROW_MIXED        each output row has its own format (row_format parameter): two's complement at its own
                     width, or SP2 codes = sign bit | i1 | i2 (see `sp2_magnitudes`)
    """

    TWOS_COMPLEMENT = "twos_complement"
    BIPOLAR = "bipolar"
    TERNARY = "ternary"
    MIDRISE = "midrise"
    POWER_OF_TWO = "power_of_two"
    ESB = "esb"
    ROW_MIXED = "row_mixed"


def esb_magnitudes(exponent_bits: int, mantissa_bits: int) -> list[int]:
    """Integer magnitude of every ESB code without its sign, indexed by (E << m) | M."""
    m = mantissa_bits
    return [mantissa if exponent == 0 else (2**m + mantissa) << (exponent - 1)
            for exponent in range(2**exponent_bits) for mantissa in range(2**m)]


@dataclass(frozen=True)
class IntSpec:
    """An integer tensor type: `bits` wide, signed or not, optionally narrow (no most-negative code)."""

    bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 1 <= self.bits <= 32:
            raise ConfigError(f"IntSpec.bits must be an integer in 1..32, got {self.bits!r}")
        if self.narrow and not self.signed:
            raise ConfigError("IntSpec.narrow applies to signed types only")

    @property
    def qmin(self) -> int:
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1 if not self.signed else 2 ** (self.bits - 1) - 1

    def to_dict(self) -> dict[str, object]:
        return {"bits": self.bits, "signed": self.signed, "narrow": self.narrow}


def sp2_fields(bits: int) -> tuple[int, int]:
    """(m1, m2): field widths of a `bits`-bit sum-of-two-powers-of-two code (m1 + m2 = bits − 1, m1 >= m2)."""
    m1 = bits // 2
    return m1, bits - 1 - m1


def sp2_magnitudes(bits: int) -> list[int]:
    """Integer magnitude of every SP2 code without its sign, indexed by (i1 << m2) | i2.

    q = q1 + q2 with q1 ∈ {0, 2^-1, …, 2^-(2^m1 − 1)} (index i1: 0 -> 0, i -> 2^-i) and q2 likewise with m2
    bits; the integer is q·2^(2^m1 − 1), so the finest level is 1 and the largest 2^(2^m1 − 1) (q1 = q2 = 1/2).
    """
    m1, m2 = sp2_fields(bits)
    top = 2**m1 - 1
    term = [0] + [2 ** (top - i) for i in range(1, 2**m1)]
    term2 = [0] + [2 ** (top - i) for i in range(1, 2**m2)]
    return [term[i1] + term2[i2] for i1 in range(2**m1) for i2 in range(2**m2)]
