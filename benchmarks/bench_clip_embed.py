"""CLIP image-embedding throughput three ways, same model, batch size and threads.

- pipeline: the asset's path (uint8 tensors -> batched tensor preprocessing -> encode_image)
- raw:      `model.encode_image` alone on batches built beforehand (the ceiling)
- peer:     open_clip's PIL `preprocess` per sample through a DataLoader (2 workers)
"""

import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mnist_assets.ml.models.clip_models import embed_images, load_clip, preprocess_batch


class PilDataset(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB"))


@torch.inference_mode()
def time_raw(clip, batches) -> float:
    started = time.perf_counter()
    for batch in batches:
        clip.model.encode_image(batch)
    return time.perf_counter() - started


@torch.inference_mode()
def time_peer(clip, paths, batch_size) -> float:
    import open_clip

    transform = open_clip.image_transform(clip.image_size, is_train=False, mean=clip.mean, std=clip.std)
    loader = DataLoader(PilDataset(paths, transform), batch_size=batch_size, num_workers=2)
    started = time.perf_counter()
    for batch in loader:
        clip.model.encode_image(batch)
    return time.perf_counter() - started


def time_pipeline(clip, images_uint8, batch_size) -> float:
    started = time.perf_counter()
    embed_images(clip, images_uint8, batch_size)
    return time.perf_counter() - started


def run(model_name: str, images_uint8: torch.Tensor, paths: list[str], batch_size: int, repeats: int = 3) -> dict:
    """Best of `repeats` for raw and pipeline alike (interleaved), so machine noise hits both the same."""
    torch.manual_seed(0)
    clip = load_clip(model_name, "none")
    count = len(images_uint8)
    batches = [preprocess_batch(images_uint8[s : s + batch_size], clip) for s in range(0, count, batch_size)]
    embeddings, _ = embed_images(clip, images_uint8, batch_size)  # warm-up
    raw, pipeline = float("inf"), float("inf")
    for _ in range(repeats):
        raw = min(raw, time_raw(clip, batches))
        pipeline = min(pipeline, time_pipeline(clip, images_uint8, batch_size))
    peer = time_peer(clip, paths, batch_size)
    assert np.isfinite(embeddings).all()
    key = model_name.replace("-", "_").lower()
    return {
        f"clip_{key}_images": count,
        f"clip_{key}_pipeline_images_per_second": round(count / pipeline, 1),
        f"clip_{key}_raw_images_per_second": round(count / raw, 1),
        f"clip_{key}_peer_images_per_second": round(count / peer, 1),
        f"clip_{key}_pipeline_over_raw": round(raw / pipeline, 3),
        f"clip_{key}_pipeline_over_peer": round(peer / pipeline, 3),
    }
