"""Systolic-array cycles per GEMM in SCALE-Sim's convention, vectorized over design points.

Mapping (hardware reference §2.1): OS keeps partial sums (rows ← M, columns ← N, streamed T = K); WS keeps
weights (rows ← K, columns ← N, T = M); IS keeps inputs (rows ← K, columns ← M, T = N).
    folds  = ceil(S_R / R) · ceil(S_C / C)
    cycles = folds · (2R + C + T − 2) − 1              WS and IS (R cycles to pre-load the stationary operand)
    cycles = folds · (R + C + T − 2) − 1               OS (operands stream in from the first cycle)
per GEMM, times `count` independent GEMMs; utilisation = MACs / (R · C · cycles).
These are the "Total Cycles" column of SCALE-Sim 3.0.0's COMPUTE_REPORT.csv (CALC bandwidth mode, no stalls):
its demand matrices hold, per fold, T rows of operands, a skew of R − 1 (C − 1) rows and, for WS/IS, R rows
of stationary-operand fill; the run ends one cycle before the last row. Agreement is exact on the golden
layers of tests/hw/scalesim_golden.json (benchmarks/bench_hw.py reruns SCALE-Sim).
"""

from __future__ import annotations

import numpy as np

from nnchip.core.errors import ConfigError
from nnchip.hw.workload import Workload

DATAFLOWS = ("os", "ws", "is")


def gemm_cycles(m: np.ndarray | int, k: np.ndarray | int, n: np.ndarray | int, rows: np.ndarray | int,
                cols: np.ndarray | int, dataflow: str) -> np.ndarray:
    """Compute cycles of one M×K×N GEMM on an R×C array (numpy broadcasting over every argument)."""
    if dataflow not in DATAFLOWS:
        raise ConfigError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
    m, k, n, r, c = (np.asarray(v, dtype=np.int64) for v in (m, k, n, rows, cols))
    if (m <= 0).any() or (k <= 0).any() or (n <= 0).any() or (r <= 0).any() or (c <= 0).any():
        raise ConfigError("GEMM and array sizes must be positive")
    s_r, s_c, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[dataflow]
    folds = -(-s_r // r) * -(-s_c // c)
    fill = 0 if dataflow == "os" else r  # the stationary operand is pre-loaded row by row
    return folds * (fill + r + c + t - 2) - 1


def workload_cycles(workload: Workload, rows: np.ndarray | int, cols: np.ndarray | int, dataflow: str) -> np.ndarray:
    """Total compute cycles of every layer, summed, for each (rows, cols) design point."""
    total = np.zeros(np.broadcast(np.asarray(rows), np.asarray(cols)).shape, dtype=np.int64)
    for layer in workload.layers:
        total = total + layer.count * gemm_cycles(layer.m, layer.k, layer.n, rows, cols, dataflow)
    return total


def utilisation(workload: Workload, rows: np.ndarray | int, cols: np.ndarray | int, dataflow: str) -> np.ndarray:
    cycles = workload_cycles(workload, rows, cols, dataflow)
    return workload.macs / (np.asarray(rows) * np.asarray(cols) * cycles)
