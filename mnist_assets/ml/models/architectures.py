"""Image classifiers for any channels, square size and class count. Each exposes `fc1`, whose 84-d
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


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class SmallVGG(nn.Module):
    """A VGG-style net with batch norm, the release candidate: 3x3 conv-BN-ReLU stages with max-pooling
    between them, the last stage's map flattened into fc-84-classes. The default widths (16 | 32-32 |
    64-64; 415K parameters at 32x32, most of them in fc1) were chosen for accuracy per CPU second
    (docs/recipes.md): cheap in the first stage, at full resolution, and wide where the image is small;
    flattening keeps where things are (global average pooling was 1 point worse on Fashion-MNIST).
    Larger images get more stages of the last width, each after a pooling, until the last stage works
    at 8x8 or less (a 64x64 photo: 4 stages)."""

    channels_last = True  # trains 1.4x faster in this memory layout on a CPU (oneDNN convolutions)

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, widths=((16,), (32, 32), (64, 64))):
        super().__init__()
        if image_size < 16:
            raise ValueError(f"the VGG-style net needs images of at least 16x16; got {image_size}x{image_size}.")
        widths = list(widths)
        while image_size // 2 ** (len(widths) - 1) > 8:
            widths.append((widths[-1][-1],))
        layers, channels = [], in_channels
        for stage, stage_widths in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for width in stage_widths:
                layers += conv_bn_relu(channels, width)
                channels = width
        side = image_size // 2 ** (len(widths) - 1)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc1 = nn.Sequential(nn.Linear(channels * side * side, 84), nn.ReLU())
        self.dropout = nn.Dropout(0.2)
        self.fc2 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.fc1(self.features(x))))


class WideVGG(SmallVGG):
    """SmallVGG at 1.5 times the widths (24 | 48-48 | 96-96): for a larger budget (a GPU, `MNIST_ASSETS_DEVICE=cuda`)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__(num_classes, in_channels, image_size, widths=((24,), (48, 48), (96, 96)))


ARCHITECTURES = {"lenet5": ModernLeNet5, "resnet_small": SmallResNet, "vgg_small": SmallVGG, "vgg_wide": WideVGG}


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def build_model(arch: str, seed: int | None = None, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """A new model for `in_channels` x `image_size` x `image_size` images; with `seed`, its initial
    weights are reproducible."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if seed is not None:
        torch.manual_seed(seed)
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, image_size=image_size)
