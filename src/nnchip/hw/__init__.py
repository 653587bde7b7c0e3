"""Hardware models: the workload of a model and cost models of accelerators (systolic arrays so far)."""

from nnchip.hw.systolic import DATAFLOWS, gemm_cycles, utilisation, workload_cycles
from nnchip.hw.workload import LayerWork, Workload, workload_from_intgraph, workload_from_model

__all__ = ["DATAFLOWS", "LayerWork", "Workload", "gemm_cycles", "utilisation", "workload_cycles",
           "workload_from_intgraph", "workload_from_model"]
