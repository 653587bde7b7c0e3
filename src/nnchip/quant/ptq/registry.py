"""Registry of post-training quantization methods: `@register_ptq_method("name")` on `fn(qmodel, data, config)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nnchip.core.registry import Registry

if TYPE_CHECKING:
    from nnchip.quant.ptq.config import PTQConfig
    from nnchip.quant.ptq.data import CalibrationData
    from nnchip.quant.quantize import QModel

PTQMethod = Callable[["QModel", "CalibrationData", "PTQConfig"], None]
PTQ_METHODS: Registry[PTQMethod] = Registry("PTQ method")
register_ptq_method = PTQ_METHODS.register
