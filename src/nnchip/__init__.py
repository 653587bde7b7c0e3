"""nnchip: compress a PyTorch CNN or ViT, lower it to a bit-exact integer model, export it, cost the chip."""

from nnchip.core.capture import CapturedGraph, capture
from nnchip.quant import (
    LayerOverride,
    QModel,
    QuantConfig,
    Quantizer,
    QuantSpec,
    calibrate,
    quantize,
    register_observer,
    register_quantizer,
)
from nnchip.quant.ptq import PTQConfig, ptq
from nnchip.train import TrainConfig, train

__all__ = [
    "CapturedGraph", "LayerOverride", "PTQConfig", "QModel", "QuantConfig", "QuantSpec", "Quantizer", "TrainConfig",
    "calibrate", "capture", "ptq", "quantize", "register_observer", "register_quantizer", "train",
]
__version__ = "0.1.0"
