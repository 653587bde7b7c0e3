"""torchvision / timm models as optional zoo entries (random weights; nothing is downloaded)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from nnchip.core.errors import ConfigError


def _optional(package: str, factory: Callable[[Any, int], nn.Module]) -> Callable[..., nn.Module]:
    def build(num_classes: int = 10, **_: Any) -> nn.Module:
        try:
            module = importlib.import_module(package)
        except Exception as exc:  # torchvision fails with RuntimeError beside some torch builds
            raise ConfigError(f"this model needs the optional package {package!r}, which cannot be imported: "
                              f"{type(exc).__name__}") from None
        return factory(module, num_classes)

    return build


EXTERNAL_MODELS: dict[str, Callable[..., nn.Module]] = {
    "tv_resnet18": _optional("torchvision.models", lambda m, n: m.resnet18(weights=None, num_classes=n)),
    "tv_mobilenet_v2": _optional("torchvision.models", lambda m, n: m.mobilenet_v2(weights=None, num_classes=n)),
    "timm_deit_tiny": _optional(
        "timm", lambda m, n: m.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=n)
    ),
}
