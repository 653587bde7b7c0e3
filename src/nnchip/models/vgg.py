"""VGG-small for CIFAR (the 6-conv network common in low-bit papers, e.g. LQ-Nets): 128-128-256-256-512-512."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class VGGSmall(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 128) -> None:
        super().__init__()
        widths = (width, width, 2 * width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        cin = in_channels
        for index, cout in enumerate(widths):
            layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if index % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        spatial = max(1, image_size // 8)
        self.classifier = nn.Linear(cin * spatial * spatial, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def vgg_small(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 128) -> nn.Module:
    return VGGSmall(num_classes, in_channels, image_size, width)
