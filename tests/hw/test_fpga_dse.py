"""VAQF-style FPGA cost model and the DSE: hand-computed costs, the VAQF operating points, selection rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnchip.core.errors import ConfigError, DataError
from nnchip.hw import LayerWork
from nnchip.hw.dse import InfeasibleError, explore, load_accuracy, pareto_filter
from nnchip.hw.fpga import SEARCH_KEYS, CostTable, cost_table, fpga_cost, load_design, load_latency_table
from nnchip.hw.specs import SPEC_DIR, load_energy, load_fpga
from nnchip.hw.workload import Workload, zoo_workload

DEVICE = load_fpga("zcu102")
DESIGN = load_design()
ENERGY = load_energy()


@pytest.fixture(scope="module")
def deit() -> CostTable:
    return cost_table(zoo_workload("deit_base"))


def _fastest(table: CostTable, design: dict | None = None, **bits: int) -> float:
    d = dataclasses.replace(DESIGN, **(design or {}))
    mesh = np.meshgrid(*(d.grid(k) for k in ("t_m", "t_n", "t_a", "t_b")), indexing="ij")
    cost = fpga_cost(table, DEVICE, d, ENERGY, *(x.ravel() for x in mesh), bits["w_bits"], bits["a_bits"])
    return float(cost.fps[cost.fits].max())


def test_vaqf_24_fps_gives_8_bit_activations(deit: CostTable) -> None:
    result = explore(deit, DEVICE, DESIGN, ENERGY, 24.0, w_bits=1)
    assert (result.chosen.w_bits, result.chosen.a_bits) == (1, 8) and result.chosen.fps >= 24.0
    c = result.chosen
    assert c.lut <= 0.85 * DEVICE.lut and c.dsp <= 0.85 * DEVICE.dsp and c.bram36 <= 0.85 * DEVICE.bram36


def test_vaqf_30_fps_gives_6_bit_activations_as_a_prediction(deit: CostTable) -> None:
    result = explore(deit, DEVICE, DESIGN, ENERGY, 30.0, w_bits=1)
    assert (result.chosen.w_bits, result.chosen.a_bits) == (1, 6)
    fastest = {p.a_bits: p.fps for p in result.best_per_precision}
    assert fastest[8] < 30 and fastest[7] < 30 <= fastest[6]  # 7-bit cannot, 6-bit can
    assert [fastest[a] for a in (8, 7, 6, 5, 4)] == sorted(fastest[a] for a in (8, 7, 6, 5, 4))


def test_exactly_one_constant_is_calibrated_and_only_on_the_24_fps_point(deit: CostTable) -> None:
    data = yaml.safe_load((SPEC_DIR / "fpga_design.yaml").read_text())
    assert all(str(entry["source"]).strip() for entry in data["constants"].values())
    calibrated = [name for name, entry in data["constants"].items() if "CALIBRATED" in str(entry["source"])]
    assert calibrated == ["lut_adder_scale"]
    # it is the largest value (2 decimals) at which 8-bit activations still reach 24 FPS
    scale = DESIGN.lut_adder_scale
    assert _fastest(deit, w_bits=1, a_bits=8) >= 24.0
    assert _fastest(deit, {"lut_adder_scale": round(scale + 0.01, 2)}, w_bits=1, a_bits=8) < 24.0


def test_binary_engine_cycles_and_resources_by_hand() -> None:
    layers = (LayerWork("stem", "linear", 4, 16, 8, 1, 8, 8), LayerWork("mid", "linear", 10, 64, 48, 1, 1, 8),
              LayerWork("head", "linear", 1, 48, 10, 1, 8, 8))
    table = cost_table(Workload(layers))
    fast_ddr = dataclasses.replace(DEVICE, ddr_gbps=1e9)  # compute-bound: memory time ~ 0
    cost = fpga_cost(table, fast_ddr, DESIGN, ENERGY, t_m=16, t_n=8, t_a=4, t_b=8, w_bits=1, a_bits=6)
    mid = 10 * (64 // 8) * (48 // 16)  # M · ceil(K/T_n) · ceil(N/T_m) on the binary engine
    stem = 4 * (16 // 8) * -(-8 // (4 * 2))  # DSP engine, 8-bit first layer: 2 products per DSP48E2
    head = 1 * (48 // 8) * -(-10 // (4 * 2))
    assert cost.cycles[0] == pytest.approx(mid + stem + head + 3 * DESIGN.pipeline_depth, abs=0.01)
    acc = 6 + 6 + 1  # b_a + ceil(log2 64) + 1
    lut_binary = 300 + DESIGN.lut_adder_scale * 16 * ((6 + 1) * (2 * 8 - 1) + acc)
    lut_dsp = 4 * 2 * (2 * 8 + 6)  # T_a · pack · (2·8 bits + ceil(log2 48))
    assert cost.lut[0] == pytest.approx(lut_binary + lut_dsp + DESIGN.nonlinear_lut + DESIGN.shell_lut)
    assert cost.dsp[0] == 4 * 8 + DESIGN.nonlinear_dsp and cost.fits[0]


def test_dsp_packing_and_roofline() -> None:
    attention = cost_table(Workload((LayerWork("w", "linear", 8, 8, 8, 1, 8, 8),
                                     LayerWork("qk", "matmul", 64, 64, 64, 4, 8, 8),
                                     LayerWork("h", "linear", 8, 8, 8, 1, 8, 8))))
    fast = dataclasses.replace(DEVICE, ddr_gbps=1e9)
    c8, c4 = (fpga_cost(attention, fast, DESIGN, ENERGY, 8, 8, 8, 8, 1, a) for a in (8, 4))
    fixed = 2 * (8 * 1 * 1) + 3 * DESIGN.pipeline_depth  # first/last layers at 8 bits, pipeline fill
    assert c8.cycles[0] - fixed == pytest.approx(4 * 64 * 8 * 4, abs=0.01)  # pack 2: ceil(64 / (8·2)) = 4
    assert c4.cycles[0] - fixed == pytest.approx(4 * 64 * 8 * 2, abs=0.01)  # pack 4 at ≤ 4 bits
    slow = dataclasses.replace(DEVICE, ddr_gbps=0.001)  # memory-bound: cycles = bytes / (bytes per cycle)
    c = fpga_cost(attention, slow, DESIGN, ENERGY, 8, 8, 8, 8, 1, 8)
    assert c.memory_bound[0] == pytest.approx(1.0)
    bits = 2 * (8 * 8 * 8 * 3) + 4 * 64 * 64 * 8 * 3
    per_cycle = 0.001e9 * DESIGN.ddr_efficiency / (DEVICE.clock_mhz * 1e6)
    assert c.cycles[0] == pytest.approx(bits / 8 / per_cycle, rel=0.01)


def test_vectorized_fit_checks_and_bad_sizes(deit: CostTable) -> None:
    t_m = np.array([8, 32, 256])
    cost = fpga_cost(deit, DEVICE, DESIGN, ENERGY, t_m, 32, 16, 16, 1, 8)
    assert cost.fps.shape == (3,) and cost.fps[0] < cost.fps[1] and cost.lut[2] > 0.85 * DEVICE.lut
    assert list(cost.fits) == [True, True, False]
    packed = fpga_cost(deit, DEVICE, DESIGN, ENERGY, 8, np.array([64, 68]), 16, 16, 1, 8)
    assert list(packed.packing_ok) == [True, False]  # T_n ≤ 4 ports · floor(128 / 8)
    with pytest.raises(ConfigError, match="t_n must be positive"):
        fpga_cost(deit, DEVICE, DESIGN, ENERGY, 8, 0, 16, 16, 1, 8)
    with pytest.raises(ConfigError, match="a_bits must be positive"):
        fpga_cost(deit, DEVICE, DESIGN, ENERGY, 8, 8, 16, 16, 1, -2)


def test_measured_latency_table_replaces_the_model(tmp_path: Path) -> None:
    def layer(name: str) -> LayerWork:
        return LayerWork(name, "linear", 197, 768, 768, 1, 1, 8)

    workload = Workload((layer("stem"), layer("b1"), layer("b2"), layer("head")))
    without_b2 = Workload((layer("stem"), layer("b1"), layer("head")))
    csv_path = tmp_path / "lat.csv"
    costs = []
    for ms in (0.0, 2.5):
        csv_path.write_text(f"layer,latency_ms\nb2,{ms}\n")
        table = cost_table(workload, load_latency_table(csv_path))
        assert table.measured_layers == ("b2",)
        costs.append(fpga_cost(table, DEVICE, DESIGN, ENERGY, 32, 32, 8, 8, 1, 8).cycles[0])
    reference = fpga_cost(cost_table(without_b2), DEVICE, DESIGN, ENERGY, 32, 32, 8, 8, 1, 8).cycles[0]
    assert costs[0] == pytest.approx(reference)
    assert costs[1] - costs[0] == pytest.approx(2.5e-3 * DEVICE.clock_mhz * 1e6)
    csv_path.write_text("layer,latency_ms\nnope,1\n")
    with pytest.raises(DataError, match="not in the model: nope"):
        cost_table(workload, load_latency_table(csv_path))
    csv_path.write_text("layer,latency_ms\nb,fast\n")
    with pytest.raises(DataError, match=r"lat.csv:2: latency_ms 'fast' is not a number"):
        load_latency_table(csv_path)


def test_accuracy_points_choose_the_most_accurate_feasible_precision(tmp_path: Path, deit: CostTable) -> None:
    records = [{"model": "deit_base", "w_bits": 1, "a_bits": a, "acc": acc}
               for a, acc in ((8, 0.80), (7, 0.79), (6, 0.795), (5, 0.795), (4, 0.70))]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(records + [{"model": "deit_base", "method": "float", "acc": 0.81}]))
    accuracy = load_accuracy(path)
    result = explore(deit, DEVICE, DESIGN, ENERGY, 30.0, w_bits=1, accuracy=accuracy)
    # 8 and 7 bits miss 30 FPS; 6 and 5 bits tie at 0.795 → the one using fewer resources
    assert (result.chosen.a_bits, result.chosen.accuracy) in ((6, 0.795), (5, 0.795))
    other = 11 - result.chosen.a_bits
    cheaper = explore(deit, DEVICE, DESIGN, ENERGY, 30.0, w_bits=1, a_bits=other).chosen
    assert result.chosen.resource_use <= cheaper.resource_use
    path.write_text(json.dumps([{"w_bits": 2, "a_bits": 2, "acc": 0.5}]))
    with pytest.raises(DataError, match="no point for the searched precisions"):
        explore(deit, DEVICE, DESIGN, ENERGY, 30.0, w_bits=1, accuracy=load_accuracy(path))


def test_unreachable_target_names_the_best_and_the_limit(deit: CostTable) -> None:
    with pytest.raises(InfeasibleError, match=r"no design meets 500 FPS on zcu102: best achievable \d+\.\d FPS "
                                              r"\(W1A4.*limited by LUT"):
        explore(deit, DEVICE, DESIGN, ENERGY, 500.0, w_bits=1)
    with pytest.raises(ConfigError, match="target FPS must be positive"):
        explore(deit, DEVICE, DESIGN, ENERGY, 0.0)


def test_full_sweep_speed_and_pareto_front(deit: CostTable) -> None:
    result = explore(deit, DEVICE, DESIGN, ENERGY, 30.0)
    assert result.points >= 1_000_000 and result.points_per_second >= 1e5
    # highest a_bits first: no 8- or 7-bit design reaches 30 FPS, and of the 6-bit ones only binary weights do
    assert (result.chosen.a_bits, result.chosen.w_bits) == (6, 1)
    fastest = {(p.w_bits, p.a_bits): p.fps for p in result.best_per_precision}
    assert max(fps for (w, a), fps in fastest.items() if a >= 7) < 30 <= fastest[(1, 6)]
    front = np.array([[-p.fps, p.resource_use, p.energy_mj] for p in result.pareto])
    assert len(front) > 10 and pareto_filter(front).all()


def test_pareto_filter_by_hand() -> None:
    points = np.array([[1, 1], [2, 0], [2, 2], [1, 1], [0, 3]])
    assert list(pareto_filter(points)) == [True, True, False, True, True]


def test_design_file_errors_name_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((SPEC_DIR / "fpga_design.yaml").read_text())
    del data["constants"]["pipeline_depth"]
    bad = tmp_path / "design.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="design.yaml: constants is missing field 'pipeline_depth'"):
        load_design(bad)
    data = yaml.safe_load((SPEC_DIR / "fpga_design.yaml").read_text())
    data["constants"]["ddr_efficiency"] = {"value": 0.7, "source": ""}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="constants.ddr_efficiency needs a value and a source"):
        load_design(bad)
    data = yaml.safe_load((SPEC_DIR / "fpga_design.yaml").read_text())
    data["search"]["t_m"] = [0, 8, 8]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="search.t_m must hold positive values"):
        load_design(bad)
    assert set(dict(DESIGN.search)) == set(SEARCH_KEYS)
