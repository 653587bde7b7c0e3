"""nnchip: compress a PyTorch CNN or ViT, lower it to a bit-exact integer model, export it, cost the chip."""

from nnchip.core.capture import CapturedGraph, capture
from nnchip.quant import (
    LayerOverride,
    QModel,
    QuantConfig,
    QuantSpec,
    Quantizer,
    calibrate,
    quantize,
    register_observer,
    register_quantizer,
)

__all__ = [
    "CapturedGraph", "LayerOverride", "QModel", "QuantConfig", "QuantSpec", "Quantizer", "calibrate", "capture",
    "quantize", "register_observer", "register_quantizer",
]
__version__ = "0.1.0"
