"""Model zoo: own definitions of CIFAR/ImageNet CNNs and ViT/DeiT shapes, built by name.

`build(name, num_classes=10, in_channels=3, image_size=32, **options)`; `list_models()`.
torchvision/timm models are available as `tv_resnet18`, `tv_mobilenet_v2`, `timm_deit_tiny` when those
packages import (they are optional; a clear ConfigError says so otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from nnchip.core.errors import ConfigError
from nnchip.models.external import EXTERNAL_MODELS
from nnchip.models.mobilenetv2 import mobilenetv2
from nnchip.models.resnet_cifar import resnet20, resnet56
from nnchip.models.resnet_imagenet import resnet18
from nnchip.models.small import cnn_tiny
from nnchip.models.vgg import vgg_small
from nnchip.models.vit import deit_base, deit_small, deit_tiny, vit_tiny

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn_tiny": cnn_tiny,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "resnet18": resnet18,
    "mobilenetv2": mobilenetv2,
    "vgg_small": vgg_small,
    "vit_tiny": vit_tiny,
    "deit_tiny": deit_tiny,
    "deit_small": deit_small,
    "deit_base": deit_base,
    **EXTERNAL_MODELS,
}


def list_models() -> list[str]:
    return sorted(MODELS)


def build(name: str, **options: Any) -> nn.Module:
    """Build a zoo model by name with random weights; options are the builder's keyword arguments."""
    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model {name!r}; known: {', '.join(list_models())}")
    try:
        return MODELS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None


__all__ = ["MODELS", "build", "list_models"]
