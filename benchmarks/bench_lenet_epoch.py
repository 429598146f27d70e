"""One LeNet training epoch three ways, same model, batch 64, seed and threads.

- pipeline: the project's bridge (uint8 tensors from FiftyOne, normalized per batch)
- limit:    the whole split as one pre-normalized float tensor, sliced into batches
- peer:     the series' way: PNG files read with PIL per sample through a DataLoader (2 workers)
"""

import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mnist_assets.ml.data.idx_source import MNIST_PIXEL_MEAN, MNIST_PIXEL_STD
from mnist_assets.ml.data.tensors import SplitTensors, normalize
from mnist_assets.ml.models.architectures import build_model
from mnist_assets.ml.models.training import train_one_epoch


def _optimizer(model):
    return torch.optim.Adam(model.parameters(), lr=3e-3)


def time_pipeline(train: SplitTensors) -> float:
    model = build_model("lenet5", seed=51)
    started = time.perf_counter()
    train_one_epoch(model, train, _optimizer(model), None, 64, torch.Generator().manual_seed(51), "cpu")
    return time.perf_counter() - started


def time_limit(train: SplitTensors) -> float:
    """The same loop with nothing but slicing a ready float tensor: the floor for any data path."""
    model = build_model("lenet5", seed=51)
    optimizer = _optimizer(model)
    images, labels = normalize(train.images, train.mean, train.std), train.labels
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(51)
    started = time.perf_counter()
    model.train()
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels), 64):
        index = order[start : start + 64]
        logits = model(images[index])
        loss = loss_fn(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        (logits.argmax(1) == labels[index]).sum().item()
    return time.perf_counter() - started


class PngDataset(Dataset):
    """The series' dataset: open each PNG with PIL, ToTensor, Normalize."""

    def __init__(self, paths, labels):
        self.paths, self.labels = paths, labels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return (torch.from_numpy(array).unsqueeze(0) - MNIST_PIXEL_MEAN) / MNIST_PIXEL_STD, int(self.labels[i])


def time_peer(paths: list[str], labels: list[int]) -> float:
    model = build_model("lenet5", seed=51)
    optimizer = _optimizer(model)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(PngDataset(paths, labels), batch_size=64, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(51))
    started = time.perf_counter()
    model.train()
    for images, targets in loader:
        logits = model(images)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - started


def run(view, cache_dir) -> dict:
    from mnist_assets.ml.data.dataset_spec import DIGITS
    from mnist_assets.ml.data.tensors import load_view_tensors

    started = time.perf_counter()
    pixels = load_view_tensors(view, cache_dir, classes=DIGITS, channels=1, size=28)
    train = SplitTensors(pixels.images, pixels.labels, pixels.sample_ids, MNIST_PIXEL_MEAN, MNIST_PIXEL_STD)
    load_seconds = time.perf_counter() - started
    paths = view.values("filepath")
    labels = [int(label) for label in view.values("ground_truth.label")]
    time_limit(train)  # warm-up: allocator, threads
    pipeline = time_pipeline(train)
    limit = time_limit(train)
    peer = time_peer(paths, labels)
    return {
        "lenet_samples": len(train),
        "lenet_bridge_load_seconds": round(load_seconds, 2),
        "lenet_epoch_pipeline_seconds": round(pipeline, 2),
        "lenet_epoch_limit_seconds": round(limit, 2),
        "lenet_epoch_peer_seconds": round(peer, 2),
        "lenet_epoch_pipeline_over_limit": round(pipeline / limit, 3),
        "lenet_epoch_peer_over_pipeline": round(peer / pipeline, 3),
    }
