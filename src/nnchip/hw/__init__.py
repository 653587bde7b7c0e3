"""Hardware models: workload, device specs as data, systolic-array cycles, energy, the FPGA accelerator and DSE."""

from nnchip.hw.dse import DesignPoint, DSEResult, InfeasibleError, explore, load_accuracy
from nnchip.hw.energy import EnergyReport, mac_energy_pj, workload_energy
from nnchip.hw.fpga import CostTable, DesignConstants, FPGACost, cost_table, fpga_cost, load_design, load_latency_table
from nnchip.hw.specs import EnergySpec, FPGASpec, load_energy, load_fpga
from nnchip.hw.systolic import DATAFLOWS, gemm_cycles, utilisation, workload_cycles
from nnchip.hw.workload import LayerWork, Workload, workload_from_intgraph, workload_from_model, zoo_workload

__all__ = ["DATAFLOWS", "CostTable", "DSEResult", "DesignConstants", "DesignPoint", "EnergyReport", "EnergySpec",
           "FPGACost", "FPGASpec", "InfeasibleError", "LayerWork", "Workload", "cost_table", "explore", "fpga_cost",
           "gemm_cycles", "load_accuracy", "load_design", "load_energy", "load_fpga", "load_latency_table",
           "mac_energy_pj", "utilisation", "workload_cycles", "workload_energy", "workload_from_intgraph",
           "workload_from_model", "zoo_workload"]
