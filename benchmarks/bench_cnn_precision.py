"""cnn_checkpoint's training epoch in fp32 and under bf16 autocast, side by side in one process.

The recipe's own step (`vgg_small`, batch 128, channels-last, Fashion-MNIST's shift + mirror + random
erasing, label smoothing 0.1, AdamW) on Fashion-MNIST's train split as ingest makes it, alternating the two
precisions so that a change in the machine's load falls on both:

    .venv/bin/python benchmarks/bench_cnn_precision.py [samples per epoch, default 12800] [rounds, default 2]
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnist_assets.assets.data import pixel_statistics
from mnist_assets.ml.data.sources import load_source, split_of
from mnist_assets.ml.data.tensors import SplitTensors, channels_first
from mnist_assets.ml.models.architectures import build_model
from mnist_assets.ml.models.augmentation import batch_augmentation
from mnist_assets.ml.models.precision import native_bf16
from mnist_assets.ml.models.training import train_one_epoch
from mnist_assets.pipeline import declared_pipeline


def epoch_seconds(train: SplitTensors, spec, dtype) -> float:
    model = build_model("vgg_small", seed=51, **spec.model_shape()).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    size = train.images.shape[-1]
    augment = batch_augmentation("shift", -train.mean / train.std, horizontal_flip=spec.flips, image_size=size, erasing=0.5)
    started = time.perf_counter()
    train_one_epoch(
        model, train, optimizer, None, 128, torch.Generator().manual_seed(51), "cpu", "", 0.1, augment, None, torch.channels_last, dtype
    )
    return time.perf_counter() - started


def run(samples: int = 12800, rounds: int = 2) -> dict:
    """Fashion-MNIST's train split as ingest makes it (split, padded to the declared size), its first `samples`."""
    spec = declared_pipeline("fashion_mnist").spec
    part = split_of(load_source(spec, None, Path(tempfile.gettempdir()) / "mnist_assets_downloads"), spec, "train", None)
    images, labels = channels_first(part.images[:samples]), torch.as_tensor(part.labels[:samples])
    train = SplitTensors(images, labels, [str(i) for i in range(len(labels))], *pixel_statistics(part.images))
    epoch_seconds(train, spec, None)  # warm-up: allocator, oneDNN's kernels
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(rounds):
        seconds["fp32"] += epoch_seconds(train, spec, None)
        seconds["bf16"] += epoch_seconds(train, spec, torch.bfloat16)
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
