"""Hardware models: a model's workload, device specs as data, systolic-array cycles and energy by bit-width."""

from nnchip.hw.energy import EnergyReport, mac_energy_pj, workload_energy
from nnchip.hw.specs import EnergySpec, FPGASpec, load_energy, load_fpga
from nnchip.hw.systolic import DATAFLOWS, gemm_cycles, utilisation, workload_cycles
from nnchip.hw.workload import LayerWork, Workload, workload_from_intgraph, workload_from_model

__all__ = ["DATAFLOWS", "EnergyReport", "EnergySpec", "FPGASpec", "LayerWork", "Workload", "gemm_cycles",
           "load_energy", "load_fpga", "mac_energy_pj", "utilisation", "workload_cycles", "workload_energy",
           "workload_from_intgraph", "workload_from_model"]
