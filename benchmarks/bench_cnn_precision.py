"""cnn_checkpoint's training epoch in fp32 and under bf16 autocast, side by side in one process.

The recipe's own step (`vgg_small`, batch 128, channels-last, Fashion-MNIST's shift + mirror + random
erasing, label smoothing 0.1, AdamW) on real Fashion-MNIST images padded to 32x32, alternating the two
precisions so that a change in the machine's load falls on both:

    .venv/bin/python benchmarks/bench_cnn_precision.py [samples per epoch, default 12800] [rounds, default 2]
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnist_assets.ml.augmentation import batch_augmentation
from mnist_assets.ml.idx_source import load_fashion_mnist
from mnist_assets.ml.models import build_model
from mnist_assets.ml.precision import native_bf16
from mnist_assets.ml.tensors import SplitTensors
from mnist_assets.ml.training import train_one_epoch


def epoch_seconds(train: SplitTensors, dtype) -> float:
    model = build_model("vgg_small", seed=51, image_size=32).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    augment = batch_augmentation("shift", -train.mean / train.std, horizontal_flip=True, image_size=32, erasing=0.5)
    started = time.perf_counter()
    train_one_epoch(
        model, train, optimizer, None, 128, torch.Generator().manual_seed(51), "cpu", "", 0.1, augment, None, torch.channels_last, dtype
    )
    return time.perf_counter() - started


def run(samples: int = 12800, rounds: int = 2) -> dict:
    data = load_fashion_mnist(None, Path(tempfile.mkdtemp()))
    images = torch.nn.functional.pad(torch.tensor(data.train_images[:samples]), (2, 2, 2, 2)).unsqueeze(1)
    train = SplitTensors(images, torch.from_numpy(data.train_labels[:samples]).long(), [str(i) for i in range(samples)], 0.2195, 0.3322)
    epoch_seconds(train, None)  # warm-up: allocator, oneDNN's kernels
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(rounds):
        seconds["fp32"] += epoch_seconds(train, None)
        seconds["bf16"] += epoch_seconds(train, torch.bfloat16)
    return {
        "cnn_samples": samples,
        "cnn_native_bf16": native_bf16("cpu"),
        "cnn_epoch_fp32_seconds": round(seconds["fp32"] / rounds, 2),
        "cnn_epoch_bf16_seconds": round(seconds["bf16"] / rounds, 2),
        "cnn_epoch_fp32_over_bf16": round(seconds["fp32"] / seconds["bf16"], 3),
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(run(*map(int, sys.argv[1:3])), indent=2))
