"""Quantization: configs, the quantizer base class, registered algorithms, quantize() and calibrate()."""

from nnchip.quant import observers as _observers  # noqa: F401  (registers built-in observers)
from nnchip.quant import quantizers as _quantizers  # noqa: F401  (registers built-in quantizers)
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.quantize import QModel, calibrate, quantize
from nnchip.quant.registry import OBSERVERS, QUANTIZERS, register_observer, register_quantizer
from nnchip.quant.spec import LayerOverride, QuantConfig, QuantSpec, default_act_spec, default_weight_spec

__all__ = [
    "OBSERVERS", "QUANTIZERS", "IntGrid", "LayerOverride", "QModel", "QuantConfig", "QuantSpec", "Quantizer",
    "calibrate", "default_act_spec", "default_weight_spec", "quantize", "register_observer", "register_quantizer",
]
