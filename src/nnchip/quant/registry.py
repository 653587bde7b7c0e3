"""Registries of quantizers and observers, filled by `nnchip.quant` importing each algorithm file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnchip.core.registry import Registry

if TYPE_CHECKING:
    from nnchip.quant.base import Quantizer
    from nnchip.quant.observers.base import Observer

QUANTIZERS: Registry[type[Quantizer]] = Registry("quantizer")
OBSERVERS: Registry[type[Observer]] = Registry("observer")
register_quantizer = QUANTIZERS.register
register_observer = OBSERVERS.register
