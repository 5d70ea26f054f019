"""ResNet-50 v1.5 in plain PyTorch, with torchvision's module names, for ``resnet50-19c8e357.pth``.

MLPerf's PyTorch ResNet-50 is a torchvision state dict; torchvision is not a dependency here, so
the network is defined once in this module (v1.5: the stride of each downsampling bottleneck is on
its 3x3 convolution). ``load_state_dict(strict=True)`` then proves that a file holds every weight
of the real network, no more, no less. ``torch`` is imported only when :func:`resnet50` is called.
"""

from __future__ import annotations

from typing import Any

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
"""Per stage: bottleneck width, blocks, stride of the first block."""
EXPANSION = 4


def resnet50(num_classes: int = 1000) -> Any:
    """An untrained ``torch.nn.Module`` whose ``state_dict()`` keys and shapes are torchvision's ``resnet50()``."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes: int, width: int, stride: int, downsample: nn.Module | None) -> None:
            super().__init__()
            out = width * EXPANSION
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            return self.relu(self.bn3(self.conv3(y)) + identity)

    class ResNet50(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            inplanes = 64
            for index, (width, blocks, stride) in enumerate(STAGES, start=1):
                layers = []
                for block in range(blocks):
                    s = stride if block == 0 else 1
                    down = None
                    if block == 0 and (s != 1 or inplanes != width * EXPANSION):
                        down = nn.Sequential(
                            nn.Conv2d(inplanes, width * EXPANSION, 1, stride=s, bias=False), nn.BatchNorm2d(width * EXPANSION)
                        )
                    layers.append(Bottleneck(inplanes, width, s, down))
                    inplanes = width * EXPANSION
                setattr(self, f"layer{index}", nn.Sequential(*layers))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * EXPANSION, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet50()
