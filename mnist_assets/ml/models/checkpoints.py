"""Classifier checkpoints: written atomically, read with `weights_only=True`, checked before use."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch

from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.core.files import atomic_write_bytes
from mnist_assets.ml.models.architectures import build_model

FORMAT = "mnist_assets.classifier/1"
SET_FORMAT = "mnist_assets.classifier_set/1"
REQUIRED_KEYS = ("format", "arch", "model", "optimizer", "epoch", "metrics", "settings")


class CheckpointError(MissingInputError):
    """A checkpoint file is missing, truncated or not one of ours."""


def checkpoint_payload(*, arch: str, model: dict, optimizer: dict, epoch: int, metrics: dict, settings: dict) -> dict:
    return {
        "format": FORMAT,
        "arch": arch,
        "model": model,
        "optimizer": optimizer,
        "epoch": epoch,
        "metrics": metrics,
        "settings": settings,
    }


def save_checkpoint_set(path: Path, payloads: list[dict]) -> None:
    """Several classifiers (the fold models of a cross-validation) in one file, written at once, so
    a failed run never leaves a mix of old and new members."""
    save_payload(path, {"format": SET_FORMAT, "members": payloads})


def save_payload(path: Path, payload: dict) -> None:
    """Write a checkpoint payload (or set) atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue(), durable=True)


def load_models(path: Path) -> list[tuple[torch.nn.Module, dict]]:
    """Every model of a checkpoint set (or the one model of a checkpoint), with its checkpoint."""
    payload = _read(path)
    if _is_classifier(payload):
        return [_model(payload, path)]
    members = payload.get("members") if isinstance(payload, dict) and payload.get("format") == SET_FORMAT else None
    if not members or not all(_is_classifier(member) for member in members):
        kind = "set" if isinstance(payload, dict) and payload.get("format") == SET_FORMAT else "checkpoint"
        raise CheckpointError(
            f"checkpoint {path} is not an mnist_assets classifier {kind} (format {FORMAT} or {SET_FORMAT}); write it again"
        )
    return [_model(member, path) for member in members]


def _read(path: Path):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a safe checkpoint ({type(error).__name__}: {str(error)[:200]}); write it again"
        ) from error


def _is_classifier(payload) -> bool:
    return isinstance(payload, dict) and payload.get("format") == FORMAT and all(k in payload for k in REQUIRED_KEYS)


def _model(payload: dict, path: Path) -> tuple[torch.nn.Module, dict]:
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


def weights_fingerprint(models: list[torch.nn.Module], payloads: list[dict]) -> str:
    """A short hash of the models' weights and the standardization they were trained with: a
    prediction kept from an earlier run is reused only while both are the same."""
    digest = hashlib.sha1()
    for model in models:
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    settings = payloads[0]["settings"]
    digest.update(repr((settings.get("mean"), settings.get("std"))).encode())
    return digest.hexdigest()[:12]
