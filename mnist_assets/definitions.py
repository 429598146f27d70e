"""The code location: every asset, check, job, schedule and resource of mnist_assets."""

import dagster as dg

from mnist_assets.assets import augmentation, clip, dataset, lenet, quality
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings
from mnist_assets.schedules import build_schedule, build_source_sensor

all_assets = dg.load_assets_from_modules([dataset, clip, lenet, quality, augmentation])

PER_SPLIT_ASSETS = [
    "raw_mnist",
    "mnist_metadata",
    "clip_embeddings",
    "umap_projection",
    "zero_shot_predictions",
]
SCORED_SPLIT_ASSETS = ["lenet_predictions", "lenet_embeddings", "hardness_scores"]
TRAINING_ASSETS = ["lenet_checkpoint"]
FINETUNE_ASSETS = ["augmented_set", "finetuned_model", "model_comparison"]

# A job holds assets of one partitioning, so the whole graph is four stages (see run_all.py).
ingest_and_clip_job = dg.define_asset_job(
    "ingest_and_clip_job",
    selection=dg.AssetSelection.assets(*PER_SPLIT_ASSETS),
    partitions_def=split_partitions,
    description="Per split: ingest MNIST, its metadata, CLIP embeddings, projections and zero-shot predictions.",
)
clip_job = dg.define_asset_job(
    "clip_job",
    selection=dg.AssetSelection.groups("clip"),
    partitions_def=split_partitions,
    description="Per split: the CLIP branch only.",
)
lenet_training_job = dg.define_asset_job(
    "lenet_training_job",
    selection=dg.AssetSelection.assets(*TRAINING_ASSETS),
    description="Train the LeNet checkpoint on train, selected on validation.",
)
lenet_scoring_job = dg.define_asset_job(
    "lenet_scoring_job",
    selection=dg.AssetSelection.assets(*SCORED_SPLIT_ASSETS),
    partitions_def=split_partitions,
    description="Per split: LeNet predictions, embeddings and quality scores.",
)
finetune_job = dg.define_asset_job(
    "finetune_job",
    selection=dg.AssetSelection.assets(*FINETUNE_ASSETS),
    description="Augment the selected training samples, fine-tune, and compare the models.",
)
JOBS = [ingest_and_clip_job, clip_job, lenet_training_job, lenet_scoring_job, finetune_job]

defs = dg.Definitions(
    assets=all_assets,
    jobs=JOBS,
    schedules=[build_schedule(ingest_and_clip_job)],
    sensors=[build_source_sensor(ingest_and_clip_job)],
    resources={"settings": MnistSettings.from_env()},
)
