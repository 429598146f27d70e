"""Re-runs from outside the graph: a sensor on the MNIST source folder.

The weekly refresh is raw_mnist's cron automation condition (automation.py);
everything downstream follows by lineage.
"""

import hashlib
import os
from pathlib import Path

import dagster as dg

from mnist_assets.ml.mnist_source import SPLITS


def source_fingerprint(folder: Path) -> str:
    """Names, sizes and modification times of the MNIST files in `folder`."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*-ubyte*")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def build_source_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        minimum_interval_seconds=60,
        description="Re-ingests every split when the files in MNIST_ASSETS_SOURCE_DIR are added or change.",
    )
    def mnist_source_sensor(context: dg.SensorEvaluationContext):
        folder = os.environ.get("MNIST_ASSETS_SOURCE_DIR")
        if not folder or not Path(folder).is_dir():
            return dg.SkipReason("MNIST_ASSETS_SOURCE_DIR is not set to a folder; nothing to watch.")
        fingerprint = source_fingerprint(Path(folder))
        if fingerprint == context.cursor:
            return dg.SkipReason("MNIST source files unchanged.")
        context.update_cursor(fingerprint)
        # Train and validation both come from the training files, so any change affects every split.
        return [dg.RunRequest(run_key=f"{fingerprint[:16]}-{split}", partition_key=split) for split in SPLITS]

    return mnist_source_sensor
