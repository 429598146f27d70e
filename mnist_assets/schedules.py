"""Re-runs from outside the graph: a sensor on a dataset's source folder.

The weekly refresh is raw_dataset's cron automation condition (automation.py);
everything downstream follows by lineage.
"""

import hashlib
import os
from pathlib import Path

import dagster as dg

from mnist_assets.ml.dataset_spec import DatasetSpec
from mnist_assets.ml.mnist_source import DEBIAN_FASHION_MNIST, SPLITS


def source_fingerprint(folder: Path, recursive: bool = False) -> str:
    """Names, sizes and modification times of the source files in `folder`: the IDX files, or
    (`recursive`) every file of an image folder."""
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file()) if recursive else folder.glob("*-ubyte*")
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def watched_folder(spec: DatasetSpec) -> str | None:
    """The folder a dataset's files are read from, when it is one a user can change."""
    if spec.source == "mnist":
        return os.environ.get("MNIST_ASSETS_SOURCE_DIR") or (str(spec.folder) if spec.folder else None)
    if spec.source == "folder":
        return str(spec.folder)
    return str(spec.folder or DEBIAN_FASHION_MNIST)


def build_source_sensor(spec: DatasetSpec, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_source_sensor",
        job=job,
        minimum_interval_seconds=60,
        description=(
            f"Re-ingests every split of {spec.name} when its source files are added or change "
            "(MNIST: MNIST_ASSETS_SOURCE_DIR or `path`; Fashion-MNIST: `path` or Debian's copy; folder: `path`)."
        ),
    )
    def source_sensor(context: dg.SensorEvaluationContext):
        folder = watched_folder(spec)
        if not folder or not Path(folder).is_dir():
            return dg.SkipReason(f"no source folder to watch for {spec.name}.")
        fingerprint = source_fingerprint(Path(folder), recursive=spec.source == "folder")
        if fingerprint == context.cursor:
            return dg.SkipReason(f"{spec.name} source files unchanged.")
        context.update_cursor(fingerprint)
        # Train and validation both come from the training files, so any change affects every split.
        return [dg.RunRequest(run_key=f"{fingerprint[:16]}-{split}", partition_key=split) for split in SPLITS]

    return source_sensor
