"""`ptq(qmodel, calib_batches, method)`: run registered post-training methods in order on one QModel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import torch

from nnchip.core.errors import ConfigError
from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData
from nnchip.quant.ptq.registry import PTQ_METHODS
from nnchip.quant.quantize import QModel


def ptq(qmodel: QModel, calib_batches: Iterable[object], method: str | Sequence[str] | PTQConfig = "calibrate",
        **options: Any) -> QModel:
    """Apply PTQ methods to `qmodel` in place and return it (in eval mode).

    method      a registered name ("calibrate", "bias_correction", "adaround", "brecq", "qdrop",
                "smoothquant"), a sequence of names, or a PTQConfig
    options     PTQConfig fields overriding the config (e.g. iterations=100)
    The calibration inputs are validated and concatenated once; the activation observers run once
    (methods that need calibrated activations calibrate first if nobody did).
    """
    if not isinstance(qmodel, QModel):
        raise ConfigError(f"ptq expects a QModel from nnchip.quantize, got {type(qmodel).__name__}")
    config = _config(method, options)
    data = CalibrationData.from_batches(calib_batches, eval_batch_size=config.eval_batch_size)
    qmodel.eval()
    torch.manual_seed(config.seed)
    for name in config.methods:
        PTQ_METHODS.get(name, field="method")(qmodel, data, config)
    return qmodel.eval()


def _config(method: str | Sequence[str] | PTQConfig, options: dict[str, Any]) -> PTQConfig:
    try:
        if isinstance(method, PTQConfig):
            return replace(method, **options) if options else method
        methods = (method,) if isinstance(method, str) else tuple(method)
        return PTQConfig(methods=methods, **options)
    except TypeError as exc:
        raise ConfigError(f"ptq: {exc}") from None
