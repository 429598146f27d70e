"""The release candidate beside LeNet: a VGG-style CNN with batch norm, trained for accuracy per CPU second."""

import dagster as dg

from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.training import TrainingConfig, train_checkpoint
from mnist_assets.partitions import TRAINING_SPLITS
from mnist_assets.resources import Settings


def build(p: Pipeline) -> list:
    @p.asset(
        "cnn_checkpoint",
        stage="release",
        per_split=False,
        parents=[dg.AssetDep(p.key("label_review"), partition_mapping=dg.SpecificPartitionsPartitionMapping(TRAINING_SPLITS))],
        heavy=True,
        checks=[p.check("accuracy_gate", "cnn_checkpoint", blocking=True)],
        kinds={"pytorch"},
        code_version="1",
        description=(
            "A VGG-style CNN with batch norm (ml/models/architectures.py, `vgg_small` by default) trained on train for the release: "
            "the augmentation the classes allow, label smoothing, a one-cycle schedule (ml/models/recipes.py, role `cnn`; "
            "docs/recipes.md). A candidate of model_release beside the LeNets."
        ),
    )
    def cnn_checkpoint(context: dg.AssetExecutionContext, config: TrainingConfig, settings: Settings):
        yield from train_checkpoint(context, p, settings, config, "cnn", "cnn_checkpoint")

    return [cnn_checkpoint]
