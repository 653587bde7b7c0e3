"""ResNet-18 with the ImageNet layout (7×7 stem, max-pool, 4 stages of 2 basic blocks, 64…512 channels).

At small inputs (image_size < 64) the stem becomes a 3×3 stride-1 conv without max-pool, the usual CIFAR
adaptation, so the network still has spatial extent to work with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.models.resnet_cifar import BasicBlock


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224) -> None:
        super().__init__()
        small = image_size < 64
        self.conv1 = (nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False) if small
                      else nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False))
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        stages: list[nn.Module] = []
        cin = 64
        for index, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return ResNet18(num_classes, in_channels, image_size)
