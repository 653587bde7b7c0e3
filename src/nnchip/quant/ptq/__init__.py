"""Post-training quantization: `ptq(qmodel, calib_batches, method)` with registered methods.

Methods (one file each, registered by name): calibrate, bias_correction, adaround (layer-wise), brecq and
qdrop (block reconstruction), smoothquant (transformer LayerNorm → Linear). See docs/ptq.md.
"""

from nnchip.quant.ptq import (  # noqa: F401  (each import registers one method)
    adaround,
    bias_correction,
    brecq,
    calibrate,
    qdrop,
    smoothquant,
)
from nnchip.quant.ptq.api import ptq
from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.registry import PTQ_METHODS, register_ptq_method

__all__ = ["PTQ_METHODS", "PTQConfig", "ptq", "register_ptq_method"]
