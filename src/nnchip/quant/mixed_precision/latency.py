"""Per-layer latency of each candidate weight width for the integer program's "latency" budget.

    t_i(b) = cycles_i(b, a_i) / f_clk       µs per image; cycles of the FPGA model's DSP engine (hw/fpga.py):
             max(compute, memory) + pipeline fill + first-tile load, with
             compute = count · M · ceil(K / T_b) · ceil(N / (T_a · pack(max(b, a_i))))
             memory  = bits moved (inputs at a_i, weights at b, outputs) / DDR bits per cycle
    a_i     the layer's input bits as quantize() sets them: first_last_bits for the first and last conv/linear
            (when set), act.bits otherwise
Bits change latency through DSP packing (4 products per DSP48E2 at ≤ 4 bits, 2 at ≤ 8, 1 above) and through the
bytes a memory-bound layer moves. The systolic model (hw/systolic.py) is not offered: its cycles do not depend
on operand widths, so every assignment would have the same latency. Layers outside the program (attention
matmuls, layers kept in float) add a constant at act.bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnchip.hw.fpga import load_design, weight_layer_cycles
from nnchip.hw.specs import load_fpga
from nnchip.hw.workload import Workload
from nnchip.quant.mixed_precision.config import MixedPrecisionConfig
from nnchip.quant.spec import QuantConfig


@dataclass(frozen=True)
class LayerLatency:
    per_bits_us: dict[str, dict[int, float]]  # assigned layer -> candidate bits -> µs
    constant_us: float  # the layers outside the program
    clock_mhz: float

    def total_us(self, bits: dict[str, int]) -> float:
        return self.constant_us + sum(self.per_bits_us[p][b] for p, b in bits.items())


def layer_latency(workload: Workload, paths: list[str], base: QuantConfig, config: MixedPrecisionConfig,
                  extra_bits: tuple[int, ...] = ()) -> LayerLatency:
    """t_i(b) for the layers `paths` (names of `workload` layers) and b in candidates ∪ extra_bits."""
    device, design = load_fpga(config.device), load_design()
    weight_layers = [layer.name for layer in workload.layers if not layer.is_attention_matmul]
    edges = {weight_layers[0], weight_layers[-1]} if weight_layers and base.first_last_bits else set()
    a_bits = np.array([base.first_last_bits if layer.name in edges else base.act.bits for layer in workload.layers])
    bits = sorted(set(config.candidates) | set(extra_bits) | {base.weight.bits, base.first_last_bits or 2})
    cycles = weight_layer_cycles(workload, device, design, t_a=config.t_a, t_b=config.t_b, w_bits=np.array(bits),
                                 a_bits=a_bits)  # (L, B)
    us = cycles / device.clock_mhz
    per_bits: dict[str, dict[int, float]] = {}
    constant = 0.0
    for row, layer in enumerate(workload.layers):
        if layer.name in paths:
            per_bits[layer.name] = {b: float(us[row, j]) for j, b in enumerate(bits)}
        else:
            constant += float(us[row, bits.index(base.weight.bits)])
    return LayerLatency(per_bits, constant, float(device.clock_mhz))


def uniform_bits(workload: Workload, paths: list[str], base: QuantConfig, bits: int) -> dict[str, int]:
    """Weight bits of every layer in `paths` when quantize() runs `base` with `bits`-bit weights (first and last
    conv/linear at first_last_bits when that is wider)."""
    weight_layers = [layer.name for layer in workload.layers if not layer.is_attention_matmul]
    edges = {weight_layers[0], weight_layers[-1]} if weight_layers and base.first_last_bits else set()
    fl = base.first_last_bits or 0
    return {p: fl if p in edges and bits < fl else bits for p in paths}
