"""Hardware models: SCALE-Sim agreement, DSE throughput, model vs simulator time, the VAQF table.

    python benchmarks/bench_hw.py [--json OUT.json] [--write-golden tests/hw/scalesim_golden.json] [--no-scalesim]

1. SCALE-Sim 3.0.0 (the `bench` extra) runs every golden layer × dataflow (os/ws/is) × array (8, 32, 128)
   side by side with nnchip.hw.systolic; the table compares SCALE-Sim's COMPUTE_REPORT "Total Cycles"
   (default CALC bandwidth mode) with ours. `--write-golden` records SCALE-Sim's numbers for the unit tests.
2. DSE: the full sweep for DeiT-B on ZCU102 (all precisions × the design file's grid, Pareto included),
   design points per second (median of 3 runs).
3. Time of our systolic model for the full DeiT-B vs SCALE-Sim's time for one DeiT-B block (128×128, WS).
4. VAQF reproduction: the fastest design per activation precision (binary weights) and the 24/30 FPS choices.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scalesim_runner import ARRAYS, DATAFLOWS, GOLDEN_LAYERS, run_scalesim  # noqa: E402

from nnchip.hw.dse import explore  # noqa: E402
from nnchip.hw.fpga import cost_table, load_design  # noqa: E402
from nnchip.hw.specs import load_energy, load_fpga  # noqa: E402
from nnchip.hw.systolic import gemm_cycles, workload_cycles  # noqa: E402
from nnchip.hw.workload import Workload, zoo_workload  # noqa: E402


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def scalesim_agreement(write_golden: Path | None) -> dict[str, object]:
    rows, records, seconds = [], [], 0.0
    for size in ARRAYS:
        for dataflow in DATAFLOWS:
            theirs, t = run_scalesim(GOLDEN_LAYERS, size, size, dataflow)
            seconds += t
            for (name, m, k, n), cycles in zip(GOLDEN_LAYERS, theirs, strict=True):
                ours = int(gemm_cycles(m, k, n, size, size, dataflow))
                rows.append([name, dataflow, f"{size}x{size}", ours, cycles, 100 * (ours - cycles) / cycles])
                records.append({"layer": name, "m": m, "k": k, "n": n, "dataflow": dataflow, "rows": size,
                                "cols": size, "scalesim_total_cycles": cycles})
    print(_table(["layer", "dataflow", "array", "ours", "SCALE-Sim", "diff %"], rows))
    worst = max(abs(r[5]) for r in rows)
    print(f"{len(rows)} comparisons, worst |diff| {worst:.3f} % (target ≤ 5 %), SCALE-Sim time {seconds:.1f} s")
    if write_golden:
        golden = {"source": "SCALE-Sim 3.0.0 (pip scalesim), benchmarks/scalesim_runner.py: GEMM topology (M, N, K), "
                            "InterfaceBandwidth CALC (default, stall-free), COMPUTE_REPORT.csv column 'Total Cycles'",
                  "command": "python benchmarks/bench_hw.py --write-golden tests/hw/scalesim_golden.json",
                  "records": records}
        body = ",\n".join("  " + json.dumps(r) for r in golden["records"])
        write_golden.write_text(f'{{\n "source": {json.dumps(golden["source"])},\n '
                                f'"command": {json.dumps(golden["command"])},\n "records": [\n{body}\n ]\n}}\n')
    return {"comparisons": len(rows), "worst_abs_diff_percent": worst, "scalesim_seconds": seconds}


def deit_block(workload: Workload) -> tuple[tuple[str, int, int, int], ...]:
    """Block 0 of DeiT-B as SCALE-Sim layers (one row per attention head)."""
    layers = []
    for layer in workload.layers:
        if layer.name.startswith("blocks.0.") or layer.name in ("matmul", "matmul_1"):
            layers += [(f"{layer.name}.{i}", layer.m, layer.k, layer.n) for i in range(layer.count)]
    return tuple(layers)


def model_vs_simulator(workload: Workload) -> dict[str, object]:
    model_times = []
    for _ in range(7):
        start = time.perf_counter()
        workload_cycles(workload, 128, 128, "ws")
        model_times.append(time.perf_counter() - start)
    block = deit_block(workload)
    sim_cycles, sim_seconds = run_scalesim(block, 128, 128, "ws")
    ours = sum(int(gemm_cycles(m, k, n, 128, 128, "ws")) for _, m, k, n in block)
    model_s = statistics.median(model_times)
    print(f"DeiT-B block 0 on 128x128 WS: {len(block)} SCALE-Sim layers, ours {ours} vs SCALE-Sim {sum(sim_cycles)} "
          f"cycles; SCALE-Sim {sim_seconds:.1f} s for one block, our model {1e3 * model_s:.2f} ms for all 12 "
          f"blocks + embedding + head: {sim_seconds / model_s:,.0f}x faster while doing 12x the work")
    return {"block_layers": len(block), "ours_block_cycles": ours, "scalesim_block_cycles": sum(sim_cycles),
            "scalesim_block_seconds": sim_seconds, "model_full_deit_seconds": model_s,
            "ratio_simulator_block_over_model_full": sim_seconds / model_s}


def dse_speed(table: object) -> dict[str, object]:
    device, design, energy = load_fpga("zcu102"), load_design(), load_energy()
    runs = [explore(table, device, design, energy, 30.0) for _ in range(3)]  # type: ignore[arg-type]
    rate = statistics.median(r.points_per_second for r in runs)
    r = runs[0]
    print(f"DSE DeiT-B on ZCU102, all precisions: {r.points:,} design points, median {rate:,.0f} points/s "
          f"(target ≥ 1e5), Pareto front {len(r.pareto)} designs; chosen W{r.chosen.w_bits}A{r.chosen.a_bits} "
          f"at {r.chosen.fps:.1f} FPS")
    return {"points": r.points, "points_per_second": rate, "pareto_size": len(r.pareto),
            "chosen_free_precision_30fps": r.chosen.to_dict()}


def vaqf_table(table: object) -> dict[str, object]:
    device, design, energy = load_fpga("zcu102"), load_design(), load_energy()
    out: dict[str, object] = {}
    for target in (24.0, 30.0):
        r = explore(table, device, design, energy, target, w_bits=1)  # type: ignore[arg-type]
        out[f"target_{target:g}"] = r.chosen.to_dict()
        if target == 24.0:
            rows = [[f"W1A{p.a_bits}", p.fps, p.lut, f"{100 * p.lut / device.lut:.0f} %", p.dsp,
                     f"{100 * p.dsp / device.dsp:.0f} %", p.bram36, f"{100 * p.bram36 / device.bram36:.0f} %",
                     f"{p.t_m}/{p.t_n}/{p.t_a}/{p.t_b}"] for p in sorted(r.best_per_precision, key=lambda p: -p.a_bits)]
            print(_table(["precision", "max FPS", "LUT", "LUT %", "DSP", "DSP %", "BRAM36", "BRAM %",
                          "T_m/T_n/T_a/T_b"], rows))
            out["fastest_per_precision"] = [p.to_dict() for p in r.best_per_precision]
        print(f"VAQF target {target:g} FPS, binary weights → W1A{r.chosen.a_bits} ({r.chosen.fps:.2f} FPS, "
              f"T_m={r.chosen.t_m} T_n={r.chosen.t_n} T_a={r.chosen.t_a} T_b={r.chosen.t_b})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_hw.json"))
    parser.add_argument("--write-golden", type=Path, default=None)
    parser.add_argument("--no-scalesim", action="store_true", help="skip the SCALE-Sim runs")
    args = parser.parse_args()
    try:
        import scalesim  # noqa: F401

        have_scalesim = not args.no_scalesim
    except ImportError:
        print("scalesim is not installed (pip install nnchip[bench]): SCALE-Sim comparisons skipped")
        have_scalesim = False
    results: dict[str, object] = {"numpy": np.__version__}
    start = time.perf_counter()
    workload = zoo_workload("deit_base")
    results["deit_workload_seconds"] = time.perf_counter() - start
    table = cost_table(workload)
    if have_scalesim:
        results["scalesim_agreement"] = scalesim_agreement(args.write_golden)
        results["model_vs_simulator"] = model_vs_simulator(workload)
    results["dse"] = dse_speed(table)
    results["vaqf"] = vaqf_table(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
