"""PTQ method "qdrop": block reconstruction with randomly dropped activation quantization (Wei et al.,
ICLR 2022, arXiv 2203.05740), see reconstruction.py."""

from __future__ import annotations

from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData
from nnchip.quant.ptq.reconstruction import reconstruct_blocks
from nnchip.quant.ptq.registry import register_ptq_method
from nnchip.quant.quantize import QModel


@register_ptq_method("qdrop")
def qdrop(qmodel: QModel, data: CalibrationData, config: PTQConfig) -> None:
    """Each activation element keeps its quantized value with probability `config.qdrop_prob` (0.5)."""
    reconstruct_blocks(qmodel, data, config, keep_prob=config.qdrop_prob)
