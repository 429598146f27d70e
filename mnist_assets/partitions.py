"""The split partitions shared by every per-split asset."""

import dagster as dg

from mnist_assets.ml.data.dataset_spec import SPLITS

split_partitions = dg.StaticPartitionsDefinition(list(SPLITS))

# lenet_checkpoint learns from train and picks its state on validation; test stays unseen.
TRAINING_SPLITS = ["train", "validation"]
