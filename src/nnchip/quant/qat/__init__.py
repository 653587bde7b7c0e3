"""Quantization-aware training schedules built on QModel (the generic trainer is nnchip.train)."""

from nnchip.quant.qat.progressive_binary import (
    ProgressiveBinaryConfig,
    attention_projection_layers,
    progressive_binarize,
)

__all__ = ["ProgressiveBinaryConfig", "attention_projection_layers", "progressive_binarize"]
