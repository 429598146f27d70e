"""The code location: every asset, check, job, sensor and resource of mnist_assets."""

import dagster as dg

from mnist_assets.assets import augmentation, clip, dataset, lenet, quality
from mnist_assets.automation import build_automation_sensor
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings
from mnist_assets.schedules import build_source_sensor

all_assets = dg.load_assets_from_modules([dataset, clip, lenet, quality, augmentation])

# A job holds assets of one partitioning: one job for every per-split asset, one for the rest.
PER_SPLIT_KEYS = [key for asset in all_assets if asset.partitions_def is not None for key in asset.keys]
TRAINING_KEYS = [key for asset in all_assets if asset.partitions_def is None for key in asset.keys]

per_split_job = dg.define_asset_job(
    "per_split_job",
    selection=dg.AssetSelection.assets(*PER_SPLIT_KEYS),
    partitions_def=split_partitions,
    description="Per split: every per-split asset (ingest, metadata, CLIP, predictions, quality scores).",
)
clip_job = dg.define_asset_job(
    "clip_job",
    selection=dg.AssetSelection.groups("clip"),
    partitions_def=split_partitions,
    description="Per split: the CLIP branch only.",
)
training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(*TRAINING_KEYS),
    description="The unpartitioned assets: LeNet checkpoint, augmented set, fine-tuned model, comparison.",
)
raw_job = dg.define_asset_job(
    "raw_job",
    selection=dg.AssetSelection.assets(dataset.raw_mnist),
    partitions_def=split_partitions,
    description="Per split: re-ingest MNIST; automation carries the change down the lineage.",
)

defs = dg.Definitions(
    assets=all_assets,
    jobs=[per_split_job, clip_job, training_job, raw_job],
    sensors=[build_automation_sensor(), build_source_sensor(raw_job)],
    resources={"settings": MnistSettings.from_env()},
)
