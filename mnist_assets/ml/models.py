"""Classifiers for 28x28 digits. Both expose `fc1`, whose 84-d output is the embedding."""

import torch
from torch import nn


class ModernLeNet5(nn.Module):
    """The series' LeNet-5: ReLU and max-pooling, conv layers 1-6-16-120, fc 120-84-10, dropout 0.5."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),  # 28 -> 24
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 12
            nn.Conv2d(6, 16, kernel_size=5),  # -> 8
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 4
            nn.Conv2d(16, 120, kernel_size=4),  # -> 1
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
    """A small CNN with residual blocks (16-32-64 channels), for the series' architecture exercise."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
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


def build_model(arch: str, seed: int | None = None, num_classes: int = 10) -> nn.Module:
    """A new model; with `seed`, its initial weights are reproducible."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if seed is not None:
        torch.manual_seed(seed)
    return ARCHITECTURES[arch](num_classes=num_classes)
