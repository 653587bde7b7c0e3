"""Design-space exploration of LUT engines over (v, K, table bits, engines), beside a MAC array.

`lut_dse(layers, ...)` costs every design point on the same conv/linear layers (shape-level `LayerWork`, e.g.
from `workload_from_model`, or `workload_from_intgraph` of a scalar-quantized model) and returns one row per
point with the MAC baseline's numbers and the ratios MAC / LUT (> 1: the LUT design is better):
    energy_ratio = E_MAC / E_LUT (with DRAM; `energy_ratio_onchip` without),
    area_ratio = logic area MAC / LUT,  speedup = cycles MAC / LUT.
Points whose v does not divide a layer's width are skipped and named in the row (`skipped`). An optional
`accuracy` map {(v, K, metric): top-1} (from training, e.g. benchmarks/bench_vq_cifar.py) is joined in.
"""

from __future__ import annotations

import itertools
from typing import Any

from nnchip.hw.lut_engine import LUTEngineSpec, lut_design_cost, lut_workload_from_layers, mac_design_cost
from nnchip.hw.specs import EnergySpec
from nnchip.hw.workload import LayerWork


def lut_dse(layers: list[LayerWork], spec: EnergySpec, *, vs: tuple[int, ...] = (2, 4, 8, 16),
            ks: tuple[int, ...] = (8, 16, 32, 64), table_bits: tuple[int, ...] = (4, 8, 16),
            engines: tuple[int, ...] = (1, 4, 16), metrics: tuple[str, ...] = ("l2", "l1", "chebyshev"),
            lanes: int = 16, mac_rows: int = 16, mac_cols: int = 16,
            accuracy: dict[tuple[int, int, str], float] | None = None) -> list[dict[str, Any]]:
    mac = mac_design_cost(layers, mac_rows, mac_cols, spec)
    rows = []
    for v, k, bits, count, metric in itertools.product(vs, ks, table_bits, engines, metrics):
        skipped = [w.name for w in layers if w.k % v]
        if skipped:
            rows.append({"v": v, "k": k, "table_bits": bits, "engines": count, "metric": metric,
                         "skipped": skipped})
            continue
        lut_layers = lut_workload_from_layers(layers, v=v, k=k, metric=metric, table_bits=bits)
        cost = lut_design_cost(lut_layers, LUTEngineSpec(engines=count, lanes=lanes), spec)
        row: dict[str, Any] = {
            "v": v, "k": k, "table_bits": bits, "engines": count, "metric": metric,
            "cycles": cost.cycles, "energy_pj": cost.energy_pj, "energy_onchip_pj": cost.energy_onchip_pj,
            "logic_area_um2": cost.logic_area_um2, "storage_kib": cost.storage_kib, "mac_cycles": mac.cycles,
            "mac_energy_pj": mac.energy_pj, "mac_energy_onchip_pj": mac.energy_onchip_pj,
            "mac_logic_area_um2": mac.logic_area_um2, "mac_storage_kib": mac.storage_kib,
            "energy_ratio": mac.energy_pj / cost.energy_pj,
            "energy_ratio_onchip": mac.energy_onchip_pj / cost.energy_onchip_pj,
            "area_ratio": mac.logic_area_um2 / cost.logic_area_um2,
            "speedup": mac.cycles / cost.cycles,
        }
        if accuracy is not None and (v, k, metric) in accuracy:
            row["acc"] = accuracy[(v, k, metric)]
        rows.append(row)
    return rows


def pareto(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("energy_pj", "logic_area_um2", "cycles")
           ) -> list[dict[str, Any]]:
    """Rows not dominated on `keys` (all minimised); skipped rows are left out."""
    costed = [r for r in rows if "skipped" not in r]
    return [r for r in costed
            if not any(all(o[key] <= r[key] for key in keys) and any(o[key] < r[key] for key in keys)
                       for o in costed)]
