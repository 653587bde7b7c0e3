"""Layer-wise mixed precision: sensitivity (measured quantization error, Hutchinson Hessian trace) and an
integer program (scipy milp) choosing one weight bit-width per layer under a size or bit-operation budget."""

from nnchip.quant.mixed_precision.api import BitAssignment, assign_bits
from nnchip.quant.mixed_precision.config import MixedPrecisionConfig
from nnchip.quant.mixed_precision.ilp import choose_bits
from nnchip.quant.mixed_precision.sensitivity import hutchinson_traces, quantization_errors

__all__ = ["BitAssignment", "MixedPrecisionConfig", "assign_bits", "choose_bits", "hutchinson_traces",
           "quantization_errors"]
