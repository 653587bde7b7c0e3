"""Energy of a workload by bit-width (hardware reference §4.2 scaling rules on the 45 nm table).

    E_mult(b_w, b_a) = mult_8bit · b_w·b_a / 64          E_add(b) = add_8bit · b / 8
    E_MAC = E_mult + E_add(b_acc),  b_acc = b_w + b_a + ceil(log2 K)     (binary weights: an add only)
    memory: each operand read once from SRAM (per 64-bit word) and, with `dram`, once from DRAM
Zero-skipping (`weight_density` < 1) removes the skipped MACs and weight reads when `zero_skipping` is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnchip.hw.specs import EnergySpec
from nnchip.hw.workload import Workload


@dataclass(frozen=True)
class EnergyReport:
    compute_pj: float
    sram_pj: float
    dram_pj: float

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.sram_pj + self.dram_pj


def mac_energy_pj(spec: EnergySpec, w_bits: int, a_bits: int, reduction: int) -> float:
    acc_bits = w_bits + a_bits + math.ceil(math.log2(max(2, reduction)))
    add = spec.add_8bit_pj * acc_bits / 8
    if w_bits == 1:
        return add
    return spec.mult_8bit_pj * w_bits * a_bits / 64 + add


def workload_energy(workload: Workload, spec: EnergySpec, *, dram: bool = True,
                    zero_skipping: bool = False) -> EnergyReport:
    compute = sram = dram_pj = 0.0
    for layer in workload.layers:
        density = layer.weight_density if zero_skipping else 1.0
        compute += layer.macs * density * mac_energy_pj(spec, layer.w_bits, layer.a_bits, layer.k)
        bits = layer.weight_bytes * 8 * density + layer.input_bytes * 8
        sram += bits / 64 * spec.sram_64bit_32kb_pj
        if dram:
            dram_pj += bits * spec.dram_pj_per_bit
    return EnergyReport(compute, sram, dram_pj)
