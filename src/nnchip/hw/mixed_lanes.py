"""Row-mixed layers on the FPGA model: fixed-point rows on DSP lanes, SP2 rows on LUT shift-add lanes, in parallel.

A layer whose output rows are split between formats (RMSMP / ILMPQ, quantizer `row_mixed`; the split is read
from the IntGraph node's `row_format` parameter by hw.workload) is costed as two lane groups working at once
(hardware reference §6, docs/hardware-models.md §2.1):
    DSP lanes   T_a × T_b DSPs take the fixed-point rows, each format at its own packing:
                cycles = count · M · ceil(K / T_b) · Σ_formats ceil(rows_f / (T_a · pack(max(b_f, b_a))))
    LUT lanes   T_m shift-add lanes of T_n products take the SP2 rows:
                cycles = count · M · ceil(K / T_n) · ceil(rows_sp2 / T_m)
    layer       compute = max(DSP lanes, LUT lanes); resources = the DSPs of the DSP lanes + the LUTs of the
                shift-add lanes (shift_add_engine_luts)
Rows are per GEMM: a layer of `count` GEMMs (grouped conv) gives each GEMM ceil(rows_f / count) rows of format f.
"""

from __future__ import annotations

import math

import numpy as np

from nnchip.core.errors import ConfigError
from nnchip.hw.workload import LayerWork


def row_mix_key(layer: LayerWork) -> tuple[int, ...]:
    """A row-mixed layer's rows per GEMM as (rows_a, bits_a, rows_b, bits_b, rows_sp2, bits_sp2): at most two
    fixed-point formats and one SP2 format (0 where a format is absent)."""
    fixed = [g for g in layer.row_groups if g.scheme == "fixed"]
    sp2 = [g for g in layer.row_groups if g.scheme == "sp2"]
    if len(fixed) > 2 or len(sp2) > 1:
        raise ConfigError(f"{layer.name}: the FPGA model costs at most two fixed-point row formats and one SP2 "
                          f"format, got {len(fixed)} and {len(sp2)}")
    cells = [(-(-g.rows // layer.count), g.bits) for g in fixed] + [(0, 0)] * (2 - len(fixed))
    cells.append((-(-sp2[0].rows // layer.count), sp2[0].bits) if sp2 else (0, 0))
    return tuple(v for cell in cells for v in cell)


def shift_add_engine_luts(t_m: np.ndarray, t_n: np.ndarray, a_bits: np.ndarray, shifts: int, acc_bits: np.ndarray,
                          *, base: float, scale: float) -> np.ndarray:
    """LUTs of the shift-add engine for SP2 rows: T_m lanes × T_n products (hardware reference §6.1, §6.2) [MODEL].

        product = ±(x << s1) ± (x << s2): two barrel shifters of S positions on the b_a-bit activation,
                  b_a · ceil(S/4) LUT6 each, and one (b_a + S)-bit adder
        lane    = T_n · product + (b_a + S + 1)(2 T_n − 1) (adder tree) + b_acc (accumulator)
        LUT     = base + scale · T_m · lane      (base, scale: lut_engine_base, lut_adder_scale of the design)
    S = 2^m1 shift positions of the wider SP2 term (zero included), b_acc = b_a + S + ceil(log2 K) + 1.
    """
    product = 2 * a_bits * math.ceil(shifts / 4) + a_bits + shifts
    lane = t_n * product + (a_bits + shifts + 1) * (2 * t_n - 1) + acc_bits
    return base + scale * t_m * lane
