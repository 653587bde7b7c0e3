"""PTQ method "calibrate": run the activation observers over the calibration data and fix the ranges."""

from __future__ import annotations

from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData
from nnchip.quant.ptq.registry import register_ptq_method
from nnchip.quant.quantize import QModel, calibrate


@register_ptq_method("calibrate")
def calibrate_method(qmodel: QModel, data: CalibrationData, config: PTQConfig) -> None:
    calibrate(qmodel, data.chunks())
