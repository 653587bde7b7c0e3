"""PTQ method "brecq": block reconstruction (Li et al., ICLR 2021, arXiv 2102.05426), see reconstruction.py."""

from __future__ import annotations

from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData
from nnchip.quant.ptq.reconstruction import reconstruct_blocks
from nnchip.quant.ptq.registry import register_ptq_method
from nnchip.quant.quantize import QModel


@register_ptq_method("brecq")
def brecq(qmodel: QModel, data: CalibrationData, config: PTQConfig) -> None:
    """Blocks see the quantized network's input; activations always quantized."""
    reconstruct_blocks(qmodel, data, config, keep_prob=1.0)
