"""Settings and handles shared by the assets: folders, the FiftyOne datasets, the device.

Every setting comes from an environment variable (documented in docs/settings.md) and
is validated when the code location loads, so a bad value is refused before any
work starts. Each declared dataset gets its own `DatasetStore`: its FiftyOne
dataset and its folder under MNIST_ASSETS_HOME.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import field_validator

from mnist_assets.ml.core.environment import assets_home, store_name

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "openai"


class SettingsError(ValueError):
    """A setting has a value the project cannot use."""


def _positive_int(name: str, raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number; set it to a positive integer or unset it.") from None
    if value <= 0:
        raise SettingsError(f"{name}={value} must be a positive integer; set it to 1 or more, or unset it.")
    return value


class Settings(dg.ConfigurableResource):
    """Where data lives and how much of it to use; docs/settings.md lists each variable."""

    home: str
    source_dir: Optional[str] = None
    limit: Optional[int] = None
    namespace: str = ""
    epochs: Optional[int] = None
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    device: str = "auto"
    clip_precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    threads: Optional[int] = None
    executor: str = "multiprocess"  # where launched runs execute steps (mnist_assets/executors.py)

    @field_validator("limit", "epochs", "threads")
    @classmethod
    def _must_be_positive(cls, value):
        if value is not None and value <= 0:
            raise SettingsError(f"must be a positive integer, got {value}; use 1 or more, or leave it unset")
        return value

    @field_validator("namespace")
    @classmethod
    def _safe_namespace(cls, value):
        from mnist_assets.ml.core.names import check_safe_name

        return check_safe_name(value, "MNIST_ASSETS_NAMESPACE") if value else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value):
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise SettingsError(f"MNIST_ASSETS_DEVICE={value!r}: use auto, cpu, cuda or cuda:N")
        return value

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value):
        from mnist_assets.executors import EXECUTORS

        if value not in EXECUTORS:
            raise SettingsError(f"MNIST_ASSETS_EXECUTOR={value!r}: use one of {', '.join(EXECUTORS)}")
        return value

    @field_validator("clip_precision")
    @classmethod
    def _known_precision(cls, value):
        if value not in ("auto", "fp32", "bf16"):
            raise SettingsError(f"MNIST_ASSETS_CLIP_PRECISION={value!r}: use auto, fp32 or bf16")
        return value

    @classmethod
    def from_env(cls, environ: dict | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            home=str(Path(env["MNIST_ASSETS_HOME"]).resolve()) if env.get("MNIST_ASSETS_HOME") else str(assets_home()),
            source_dir=env.get("MNIST_ASSETS_SOURCE_DIR") or None,
            limit=_positive_int("MNIST_ASSETS_LIMIT", env.get("MNIST_ASSETS_LIMIT")),
            namespace=env.get("MNIST_ASSETS_NAMESPACE") or "",
            epochs=_positive_int("MNIST_ASSETS_EPOCHS", env.get("MNIST_ASSETS_EPOCHS")),
            clip_model=env.get("MNIST_ASSETS_CLIP_MODEL") or DEFAULT_CLIP_MODEL,
            clip_pretrained=env.get("MNIST_ASSETS_CLIP_PRETRAINED") or DEFAULT_CLIP_PRETRAINED,
            device=env.get("MNIST_ASSETS_DEVICE") or "auto",
            clip_precision=env.get("MNIST_ASSETS_CLIP_PRECISION") or "auto",
            threads=_positive_int("MNIST_ASSETS_THREADS", env.get("MNIST_ASSETS_THREADS")),
            executor=env.get("MNIST_ASSETS_EXECUTOR") or "multiprocess",
        )

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def downloads_dir(self) -> Path:
        return self.home_path / "downloads"

    @property
    def numba_cache_dir(self) -> Path:
        """UMAP's compiled functions (ml/figures/numba_cache.py), shared by every dataset and run; numba's
        own `NUMBA_CACHE_DIR`, when set, puts them elsewhere (one folder for several homes)."""
        return Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else self.home_path / "numba_cache"

    def store(self, dataset: str) -> DatasetStore:
        """The FiftyOne dataset and folder of one declared dataset (under the namespace, if set)."""
        from mnist_assets.ml.core.names import check_safe_name

        name = store_name(dataset, self.namespace)
        check_safe_name(name, "dataset name")
        return DatasetStore(
            name=name,
            dir=self.home_path / "datasets" / name,
            images_dir=self.home_path / "images",
            review_dir=self.home_path / "reviews" / name,
        )

    def torch_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SettingsError(f"MNIST_ASSETS_DEVICE={self.device} but no CUDA device is available; use cpu or auto.")
        return self.device

    def configure_torch(self) -> None:
        """Match torch's threads to the setting (or leave torch's default: all cores)."""
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)


@dataclass(frozen=True)
class DatasetStore:
    """Where one dataset lives: its FiftyOne dataset (and `<name>-augmented`), and its folder of
    tensors, checkpoints and arrays. Images are shared between datasets: they are named by content."""

    name: str
    dir: Path
    images_dir: Path
    review_dir: Path  # the review log: a person's decisions, kept apart from what the pipeline rebuilds

    def decision_log(self):
        """The dataset's log of label decisions (ml/decisions/log.py): append-only, no lock needed."""
        from mnist_assets.ml.decisions import DecisionLog

        return DecisionLog(self.review_dir)

    @property
    def tensor_cache_dir(self) -> Path:
        return self.dir / "tensors"

    def artifact_path(self, *parts: str) -> Path:
        from mnist_assets.ml.core.names import check_safe_name

        for part in parts:
            check_safe_name(part.replace(".", "_"), "artifact name")
        return self.dir.joinpath(*parts)

    def dataset(self):
        from mnist_assets.ml.store.fiftyone_store import get_dataset

        return get_dataset(self.name)

    def exists(self) -> bool:
        """Whether the FiftyOne dataset exists (without creating it)."""
        import fiftyone as fo

        from mnist_assets.ml.store.fiftyone_store import connect

        connect()
        return fo.dataset_exists(self.name)

    def augmented(self):
        """Augmented samples live in their own dataset, `<name>-augmented`, linked to their sources."""
        from mnist_assets.ml.store.fiftyone_store import get_dataset

        return get_dataset(f"{self.name}-augmented")
