"""Classifier checkpoints: written atomically, read with `weights_only=True`, checked before use."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from mnist_assets.ml.errors import MissingInputError
from mnist_assets.ml.files import atomic_write_bytes
from mnist_assets.ml.models import build_model

FORMAT = "mnist_assets.classifier/1"
REQUIRED_KEYS = ("format", "arch", "model", "optimizer", "epoch", "metrics", "settings")


class CheckpointError(MissingInputError):
    """A checkpoint file is missing, truncated or not one of ours."""


def save_checkpoint(path: Path, *, arch: str, model: dict, optimizer: dict, epoch: int, metrics: dict, settings: dict) -> None:
    """Serialize to memory, then write via a temporary file and rename: no partial file is ever visible."""
    payload = {
        "format": FORMAT,
        "arch": arch,
        "model": model,
        "optimizer": optimizer,
        "epoch": epoch,
        "metrics": metrics,
        "settings": settings,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Load and validate a checkpoint (tensors and plain values only; no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a safe checkpoint ({type(error).__name__}: {str(error)[:200]}); "
            "write it again"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(
            f"checkpoint {path} is not an mnist_assets classifier checkpoint (format {FORMAT}); write it again"
        )
    return payload


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint with its weights, and the checkpoint itself."""
    payload = load_checkpoint(path)
    settings = payload["settings"]
    model = build_model(
        payload["arch"],
        num_classes=int(settings.get("num_classes", 10)),
        in_channels=int(settings.get("in_channels", 1)),
        image_size=int(settings.get("image_size", 28)),
    )
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit architecture {payload['arch']!r}: {error}") from error
    return model, payload
