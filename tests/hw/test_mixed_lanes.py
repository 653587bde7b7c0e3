"""Row-mixed layers on the FPGA model: fixed-point rows on DSP lanes and SP2 rows on LUT shift-add lanes in
parallel, by hand; the per-row formats read from the IntGraph."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from lowering_cases import lowered

from nnchip.core.errors import ConfigError
from nnchip.hw.fpga import cost_table, fpga_cost, load_design
from nnchip.hw.specs import load_energy, load_fpga
from nnchip.hw.workload import LayerWork, RowGroup, Workload, workload_from_intgraph
from nnchip.quant import QuantSpec

DEVICE = dataclasses.replace(load_fpga("zcu102"), ddr_gbps=1e9)  # compute-bound: memory time ~ 0
DESIGN = load_design()
ENERGY = load_energy()
DESIGN_POINT = {"t_m": 4, "t_n": 16, "t_a": 4, "t_b": 8, "w_bits": 4, "a_bits": 4}


def mixed_layer(high: int, fixed: int, sp2: int) -> LayerWork:
    """M 16, K 64, N 32 = high (8-bit) + fixed (4-bit) + sp2 (4-bit) rows, 4-bit inputs."""
    groups = (RowGroup("fixed", 8, high), RowGroup("fixed", 4, fixed), RowGroup("sp2", 4, sp2))
    return LayerWork("mix", "linear", 16, 64, 32, 1, 4, 4, row_groups=groups)


def test_two_lane_groups_in_parallel_by_hand() -> None:
    # DSP lanes: M · ceil(K/T_b) · [ceil(4/(T_a·2)) + ceil(fixed/(T_a·4))]   (8-bit rows 2 per DSP48E2, 4-bit 4)
    # LUT lanes: M · ceil(K/T_n) · ceil(sp2/T_m)
    cases = {(4, 18, 10): max(16 * 8 * (1 + 2), 16 * 4 * 3),  # DSP side limits: 384 vs 192
             (4, 2, 26): max(16 * 8 * (1 + 1), 16 * 4 * 7)}  # LUT side limits: 256 vs 448
    for rows, compute in cases.items():
        cost = fpga_cost(cost_table(Workload((mixed_layer(*rows),))), DEVICE, DESIGN, ENERGY, **DESIGN_POINT)
        assert cost.cycles[0] == pytest.approx(compute + DESIGN.pipeline_depth, abs=0.01)
    # resources: the DSPs of the fixed-point lanes, the LUTs of the shift-add lanes (SP2 4 bits: m1 = 2, S = 4)
    s = 4  # shift positions of the wider term
    product = 2 * 4 * 1 + (4 + s)  # two barrel shifters b_a · ceil(S/4) + one (b_a + S)-bit adder
    lane = 16 * product + (4 + s + 1) * (2 * 16 - 1) + (4 + s + 6 + 1)  # T_n products, adder tree, accumulator
    lut_sp2 = DESIGN.lut_engine_base + DESIGN.lut_adder_scale * 4 * lane
    lut_dsp = 4 * 2 * (2 * 8 + 6)  # T_a · pack of the widest (8-bit) rows · (2·8 + ceil(log2 64))
    assert cost.lut[0] == pytest.approx(lut_sp2 + lut_dsp + DESIGN.nonlinear_lut + DESIGN.shell_lut)
    assert cost.dsp[0] == 4 * 8 + DESIGN.nonlinear_dsp


def test_without_sp2_rows_there_is_no_shift_add_engine() -> None:
    fixed_only = LayerWork("mix", "linear", 16, 64, 32, 1, 4, 4,
                           row_groups=(RowGroup("fixed", 8, 8), RowGroup("fixed", 4, 24)))
    uniform = LayerWork("u", "linear", 16, 64, 32, 1, 8, 4)
    a, b = (fpga_cost(cost_table(Workload((layer,))), DEVICE, DESIGN, ENERGY, **DESIGN_POINT)
            for layer in (fixed_only, uniform))
    assert a.cycles[0] == pytest.approx(16 * 8 * (1 + 2) + DESIGN.pipeline_depth, abs=0.01)
    assert a.lut[0] == b.lut[0]  # no LUT lanes; the DSP extraction adders sized for the 8-bit rows


def test_row_groups_must_cover_the_rows() -> None:
    with pytest.raises(ConfigError, match="mix: row_groups cover 31 rows, the layer has 32"):
        LayerWork("mix", "linear", 16, 64, 32, 1, 4, 4, row_groups=(RowGroup("fixed", 4, 31),))


def test_row_formats_come_from_the_intgraph() -> None:
    spec = QuantSpec(bits=4, quantizer="row_mixed", granularity="channel",
                     options=(("high_ratio", 0.25), ("sp2_ratio", 0.25)))
    qmodel, graph, _, _ = lowered("cnn", "w4a4", weight=spec)
    formats = {path: layer.weight_quantizer.row_format for path, layer in qmodel.layers()
               if hasattr(layer.weight_quantizer, "row_format")}
    workload = workload_from_intgraph(graph)
    mixed = [layer for layer in workload.layers if layer.row_groups]
    assert mixed and {layer.name for layer in mixed} == set(formats)
    for layer in mixed:
        counts = torch.bincount(formats[layer.name], minlength=3).tolist()
        expected = [g for g in (RowGroup("fixed", 8, counts[0]), RowGroup("fixed", 4, counts[1]),
                                RowGroup("sp2", 4, counts[2])) if g.rows]
        assert list(layer.row_groups) == expected
    table = cost_table(workload)
    assert table.row_mix is not None and int(np.asarray(table.row_mix)[:, 4].sum()) > 0  # SP2 rows reach the model
    cost = fpga_cost(table, DEVICE, DESIGN, ENERGY, **DESIGN_POINT)
    plain = fpga_cost(cost_table(Workload(tuple(dataclasses.replace(layer, row_groups=())
                                                for layer in workload.layers))), DEVICE, DESIGN, ENERGY,
                      **DESIGN_POINT)
    assert cost.lut[0] > plain.lut[0]  # the shift-add lanes cost LUTs
