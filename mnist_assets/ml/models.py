"""Image classifiers for any channels, square size and class count. Both expose `fc1`, whose 84-d
output is the embedding."""

import torch
from torch import nn


class ModernLeNet5(nn.Module):
    """The series' LeNet-5: ReLU and max-pooling, conv layers C-6-16-120, fc 120-84-classes, dropout 0.5.

    The third convolution spans what is left of the image, so it ends at 1x1: a 4x4 kernel at 28x28
    (the series), 5x5 at 32x32 (C5 of the 1998 paper).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        remaining = ((image_size - 4) // 2 - 4) // 2
        if remaining < 1:
            raise ValueError(f"LeNet-5 needs images of at least 16x16; got {image_size}x{image_size}.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # 28 -> 24 (32 -> 28)
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 12 (14)
            nn.Conv2d(6, 16, kernel_size=5),  # -> 8 (10)
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 4 (5)
            nn.Conv2d(16, 120, kernel_size=remaining),  # -> 1
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc1 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.fc1(self.features(x))))


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small CNN with residual blocks (16-32-64 channels), for the series' architecture exercise;
    global average pooling makes it work at any image size."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            ResidualBlock(16, 16),
            ResidualBlock(16, 32, stride=2),  # -> 14
            ResidualBlock(32, 64, stride=2),  # -> 7
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc1 = nn.Sequential(nn.Linear(64, 84), nn.ReLU())
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.fc1(self.features(x))))


ARCHITECTURES = {"lenet5": ModernLeNet5, "resnet_small": SmallResNet}


def build_model(arch: str, seed: int | None = None, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """A new model for `in_channels` x `image_size` x `image_size` images; with `seed`, its initial
    weights are reproducible."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if seed is not None:
        torch.manual_seed(seed)
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, image_size=image_size)
