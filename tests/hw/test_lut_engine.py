"""LUT-engine cost model: hand-computed counts, cycles and energy; workload from a lowered LUT model; DSE."""

from __future__ import annotations

import pytest
import torch

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.errors import ConfigError
from nnchip.hw.energy import workload_energy
from nnchip.hw.lut_dse import lut_dse, pareto
from nnchip.hw.lut_engine import (
    LUTEngineSpec,
    LUTLayerWork,
    lut_cycles,
    lut_energy,
    lut_engine_area_um2,
    lut_workload_from_intgraph,
    mac_design_cost,
)
from nnchip.hw.specs import EnergySpec
from nnchip.hw.workload import LayerWork, Workload
from nnchip.lower import lower
from nnchip.models import build
from nnchip.vq import VQConfig, vq

SPEC = EnergySpec("unit", mult_8bit_pj=0.2, add_8bit_pj=0.03, sram_64bit_8kb_pj=10.0, sram_64bit_32kb_pj=20.0,
                  sram_64bit_1mb_pj=100.0, dram_pj_per_bit=20.0)


def test_counts_cycles_energy_and_area_by_hand() -> None:
    w = LUTLayerWork("fc", rows=10, d=8, m=3, v=4, k=4, metric="chebyshev", a_bits=8, table_bits=8)
    assert (w.codebooks, w.distance_ops, w.compares, w.lookups) == (2, 320, 60, 60)
    assert (w.table_storage_bits, w.index_bits, w.dist_bits, w.acc_bits) == (192, 2, 9, 10)
    assert lut_cycles(w, LUTEngineSpec(engines=2, lanes=2)) == 10 * 2  # 20 sub-vectors / 2 engines × ceil(3/2)
    assert lut_cycles(w, LUTEngineSpec(engines=1, lanes=4, distance_units=1)) == 20 * 4  # K = 4 centroids serially
    report = lut_energy([w], LUTEngineSpec(), SPEC)
    element = 0.03 * 9 / 8 * 2 + 0.03 * 9 / 8  # sub and abs at 9 bits, max at the 9-bit distance width
    compute = 320 * element + 60 * 0.03 * 9 / 8 + 60 * 0.03 * 10 / 8
    assert report.compute_pj == pytest.approx(compute)
    moved = 192 + 10 * 8 * 8 + 2 * 10 * 2 * 2
    assert report.sram_pj == pytest.approx(60 * 8 * 10 / 64 + moved / 64 * 20)
    assert report.dram_pj == pytest.approx((192 + 640) * 20)
    area = 4 * 4 * (2 * 36 * 9 / 8 + 36 * 9 / 8) + 3 * 36 * 9 / 8 + 16 * 36 * 10 / 8
    assert lut_engine_area_um2(LUTEngineSpec(engines=1), [w]) == pytest.approx(area)
    with pytest.raises(ConfigError, match="fc: v = 3 does not divide the input width D = 8"):
        LUTLayerWork("fc", rows=1, d=8, m=3, v=3, k=4, metric="l1", a_bits=8, table_bits=8)


def test_mac_baseline_uses_the_shared_energy_model() -> None:
    layers = [LayerWork("fc", "linear", 10, 8, 3, 1, 8, 8)]
    cost = mac_design_cost(layers, 4, 4, SPEC)
    assert cost.energy_pj == pytest.approx(workload_energy(Workload(tuple(layers)), SPEC).total_pj)
    assert cost.logic_area_um2 == pytest.approx(16 * (282 + 36 * (16 + 3) / 8))


def test_workload_of_a_lowered_lut_model() -> None:
    x = torch.randn(16, 1, 8, 8)
    model = build("cnn_tiny", in_channels=1, image_size=8).eval()
    gm = vq(model, VQConfig(v=8, k=16, metric="l1", table_bits=6), example_inputs=x[:2], calibration=[x])
    graph = lower(calibrate(quantize(gm, QuantConfig(), example_inputs=x[:2]), [x]))
    layers = lut_workload_from_intgraph(graph)
    assert [(w.rows, w.d, w.m, w.v, w.k, w.metric, w.table_bits) for w in layers] == [
        (64, 144, 32, 8, 16, "l1", 6), (16, 288, 32, 8, 16, "l1", 6)]  # conv2 at 8×8, conv3 after the pool


def test_dse_rows_ratios_and_pareto() -> None:
    layers = [LayerWork("a", "conv2d", 64, 144, 32, 1, 8, 8), LayerWork("b", "linear", 4, 32, 16, 1, 8, 8)]
    rows = lut_dse(layers, SPEC, vs=(4, 9), ks=(8, 16), table_bits=(8,), engines=(1, 4), metrics=("l2", "l1"),
                   accuracy={(4, 16, "l1"): 0.9})
    assert len(rows) == 2 * 2 * 2 * 2
    assert all(r["skipped"] == ["b"] for r in rows if r["v"] == 9)  # 9 does not divide 32
    costed = [r for r in rows if "skipped" not in r]
    assert all(r["energy_ratio"] == pytest.approx(r["mac_energy_pj"] / r["energy_pj"]) for r in costed)
    assert [r["acc"] for r in costed if "acc" in r] == [0.9, 0.9]  # both engine counts
    fewer = {(r["k"], r["metric"], r["engines"]): r["cycles"] for r in costed}
    assert fewer[(16, "l1", 4)] < fewer[(16, "l1", 1)]
    front = pareto(rows)
    assert front and all("skipped" not in r for r in front)
