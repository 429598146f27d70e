"""open_clip models: load with real weights (a tag or a file) or, when asked, random ones; embed digits in batches.

No CLIP weights ship with any package, so a missing download is the common case
offline; it is reported with both ways to provide weights.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mnist_assets.ml.data.tensors import channels_first
from mnist_assets.ml.models.precision import autocast_dtype

TINY_MODEL = "mnist-tiny"
RANDOM_WEIGHTS = "none"


class ClipWeightsError(RuntimeError):
    """No usable CLIP weights could be had for the requested model."""


CONFIG_DIR = Path(__file__).with_name("clip_configs")  # mnist-tiny.json


def register_tiny_model() -> None:
    """Make `mnist-tiny` (3.4 M parameters) an open_clip architecture, for tests and smoke runs."""
    import open_clip

    if TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def known_architectures() -> list[str]:
    """open_clip's architecture names plus mnist-tiny, read from config files without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    names = {TINY_MODEL}
    if spec and spec.submodule_search_locations:
        names.update(p.stem for p in (Path(spec.submodule_search_locations[0]) / "model_configs").glob("*.json"))
    return sorted(names)


def looks_like_path(pretrained: str) -> bool:
    return "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))


def weights_label(pretrained: str) -> str:
    """A short, file-name-safe name for the weights: the tag, `random`, or `file-<hash>`."""
    if pretrained.lower() == RANDOM_WEIGHTS:
        return "random"
    if looks_like_path(pretrained):
        return "file-" + hashlib.sha1(str(Path(pretrained).resolve()).encode()).hexdigest()[:10]
    return pretrained


def weights_identity(pretrained: str) -> str:
    """What tells one set of weights from another: the label, and for a file also its size and
    modification time (a file replaced at the same path gives other embeddings)."""
    label = weights_label(pretrained)
    if looks_like_path(pretrained) and Path(pretrained).is_file():
        stat = Path(pretrained).stat()
        return f"{label}-{stat.st_size}-{stat.st_mtime_ns}"
    return label


def weights_help(model_name: str) -> str:
    return (
        "Provide weights in one of two ways: (1) run once on a machine with internet access so open_clip "
        f"downloads the tag into the Hugging Face cache (~/.cache/huggingface; copy that folder here), or "
        f"(2) set MNIST_ASSETS_CLIP_PRETRAINED to a local checkpoint file for {model_name} "
        "(for example open_clip_pytorch_model.bin or .safetensors). "
        "MNIST_ASSETS_CLIP_PRETRAINED=none builds random weights, for tests and smoke runs only."
    )


def validate_clip_settings(model_name: str, pretrained: str) -> None:
    """Refuse an unknown architecture or a missing checkpoint file before any work starts."""
    if model_name not in known_architectures():
        raise ValueError(
            f"MNIST_ASSETS_CLIP_MODEL={model_name!r} is not an open_clip architecture; "
            f"use one of open_clip.list_models() such as ViT-B-32, or {TINY_MODEL}."
        )
    if looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise ValueError(
            f"MNIST_ASSETS_CLIP_PRETRAINED={pretrained!r} looks like a checkpoint path but no such file exists; "
            "fix the path, or use an open_clip pretrained tag."
        )


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _resolve_tag(model_name: str, tag: str) -> tuple[str, dict]:
    """Where a tag's weights come from: the local cache (no network needed), else a download.

    Offline with nothing cached fails at once instead of after the hub client's retries.
    """
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        raise ClipWeightsError(
            f"{tag!r} is not a pretrained tag of {model_name} (known: {', '.join(tags) or 'none'}). " + weights_help(model_name)
        )
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    hub = cfg.get("hf_hub", "").rstrip("/")
    repo_parts = hub.split("/")
    repo_id, named_file = "/".join(repo_parts[:2]), "/".join(repo_parts[2:])
    candidates = [named_file] if named_file else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for filename in candidates if repo_id else []:
        cached = try_to_load_from_cache(repo_id, filename)
        if isinstance(cached, str):
            preprocess = {key: cfg[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in cfg}
            return cached, {"force_quick_gelu": bool(cfg.get("quick_gelu")), "force_preprocess_cfg": preprocess}
    if not _hub_reachable():
        raise ClipWeightsError(
            f"no CLIP weights for {model_name} {tag!r}: this machine is offline and they are not in the local "
            "Hugging Face cache. " + weights_help(model_name)
        )
    return tag, {}


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    name: str
    weights: str  # the weights label (tag, "random" or "file-...")


def load_clip(model_name: str, pretrained: str, device: str = "cpu") -> LoadedClip:
    """Build an open_clip model with weights from a tag, a local file, or `none` (random)."""
    import open_clip

    register_tiny_model()
    validate_clip_settings(model_name, pretrained)
    random_weights = pretrained.lower() == RANDOM_WEIGHTS
    options = {}
    if random_weights:
        source = None
    elif looks_like_path(pretrained):
        source = pretrained
    else:
        source, options = _resolve_tag(model_name, pretrained)
    try:
        # Random weights from a fixed seed: every run builds the same model, so embeddings kept from
        # an earlier run (ml/store/sample_cache.py) and new ones are of one model.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = open_clip.create_model(model_name, pretrained=source, device=device, weights_only=True, **options)
    except Exception as error:  # noqa: BLE001 - any download or load failure means "no weights"
        raise ClipWeightsError(
            f"could not load CLIP weights {pretrained!r} for {model_name}: {type(error).__name__}: {str(error)[:300]}. "
            + weights_help(model_name)
        ) from error
    model.eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        image_size=int(size),
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        interpolation=cfg.get("interpolation", "bicubic"),
        name=model_name,
        weights=weights_label(pretrained),
    )


@functools.lru_cache(maxsize=16)
def resize_matrix(in_size: int, out_size: int, mode: str) -> torch.Tensor:
    """[in, out] matrix M with row @ M == F.interpolate(row): the resize is separable, so x -> M^T x M.

    Two small matmuls are several times faster on the CPU than `F.interpolate`
    on the same batch, and give the same numbers.
    """
    rows = torch.eye(in_size).view(in_size, 1, 1, in_size)
    return F.interpolate(rows, size=(1, out_size), mode=mode, align_corners=False).view(in_size, out_size)


def preprocess_batch(images_uint8: torch.Tensor, clip: LoadedClip, invert: bool = False, pad: int = 0) -> torch.Tensor:
    """uint8 [B, C, H, H] (C 1 or 3; gray may be [B, H, H]) -> normalized float [B, 3, S, S], as
    open_clip's transform does it, on tensors.

    The model's own transform resizes (bicubic) to S, center-crops (a no-op for
    square images), repeats a gray channel and standardizes. `invert` gives a
    dark digit on a light ground and `pad` adds a margin, closer to the photos
    CLIP learned from.
    """
    x = channels_first(images_uint8).float()
    if invert:
        x = 255.0 - x
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=255.0 if invert else 0.0)
    mode = "bilinear" if clip.interpolation == "bilinear" else "bicubic"
    matrix = resize_matrix(x.shape[-1], clip.image_size, mode).to(x.device)  # runs where the batch is
    # The 1/255 scaling rides on the (small) left matrix instead of a pass over the batch.
    resized = ((matrix.T / 255.0) @ x @ matrix).clamp_(0.0, 1.0)
    # Standardize (repeating a gray channel by broadcasting): one pass, (y - mean) / std = y * (1 / std) - mean / std.
    scale = 1.0 / torch.tensor(clip.std, device=x.device).view(1, 3, 1, 1)
    bias = -torch.tensor(clip.mean, device=x.device).view(1, 3, 1, 1) * scale
    return torch.addcmul(bias, resized, scale)


@torch.inference_mode()
def embed_images(
    clip: LoadedClip,
    images_uint8: torch.Tensor,
    batch_size: int = 256,
    device: str = "cpu",
    invert: bool = False,
    pad: int = 0,
    on_progress=None,
    precision: str = "auto",
) -> tuple[np.ndarray, float]:
    """L2-normalized image embeddings [N, D] and the images per second achieved.

    Each uint8 batch goes to the device first (a quarter of the bytes of its float form) and is
    preprocessed there; `precision` "bf16" (the default on CUDA) runs the model under bf16 autocast.
    """
    dtype = autocast_dtype(precision, device)
    started = time.perf_counter()
    chunks = []
    bar = tqdm(total=len(images_uint8), desc="clip", mininterval=2.0, leave=False, disable=not sys.stderr.isatty())
    for start in range(0, len(images_uint8), batch_size):
        batch = preprocess_batch(images_uint8[start : start + batch_size].to(device, non_blocking=True), clip, invert, pad)
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            features = clip.model.encode_image(batch)
        chunks.append(F.normalize(features.float(), dim=-1).cpu())
        bar.update(len(batch))
        if on_progress is not None:
            on_progress(start + len(batch), len(images_uint8))
    bar.close()
    embeddings = torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)
    return embeddings, len(images_uint8) / max(time.perf_counter() - started, 1e-9)
