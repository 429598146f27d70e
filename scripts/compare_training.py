"""Train each (architecture, recipe) with the same code and data and print test accuracy.

Reads the splits that <dataset>/raw_dataset put in the FiftyOne dataset (MNIST_ASSETS_HOME,
MNIST_ASSETS_NAMESPACE), so materialize raw_dataset for all three splits first (--dataset, default mnist).

    .venv/bin/python scripts/compare_training.py --runs lenet5:onecycle lenet5:series resnet_small:onecycle
    .venv/bin/python scripts/compare_training.py --runs lenet5:onecycle:affine   # with a batch augmentation
"""

import argparse
import json
import time

import torch

from mnist_assets.assets.data import split_tensors
from mnist_assets.ml.models import build_model
from mnist_assets.ml.training import TrainConfig, evaluate, fit
from mnist_assets.pipeline import declared_pipeline
from mnist_assets.resources import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs", nargs="+", default=["lenet5:onecycle", "lenet5:series"], help="arch:recipe or arch:recipe:batch_augmentation"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=51)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--dataset", default="mnist", help="a declared dataset (mnist_assets/defs/<name>)")
    args = parser.parse_args()

    settings = Settings.from_env()
    settings.configure_torch()
    pipeline = declared_pipeline(args.dataset)
    data = {split: split_tensors(pipeline, settings, split)[2] for split in ("train", "validation", "test")}
    rows = []
    for run in args.runs:
        arch, recipe, *augmentation = run.split(":")
        config = TrainConfig(
            arch=arch,
            recipe=recipe,
            epochs=args.epochs,
            seed=args.seed,
            batch_augmentation=augmentation[0] if augmentation else "none",
            horizontal_flip=pipeline.spec.flips,
        )
        started = time.perf_counter()
        model = build_model(arch, args.seed, **pipeline.spec.model_shape())
        # fit leaves the model holding its best validation-loss state.
        result = fit(model, data["train"], data["validation"], config, on_epoch=lambda r, run=run: print(run, r, flush=True))
        _, test_accuracy = evaluate(model, data["test"], "cpu")
        rows.append(
            {
                "arch": arch,
                "recipe": recipe,
                "batch_augmentation": config.batch_augmentation,
                "best_epoch": result.best_epoch,
                "val_accuracy": round(result.best_metrics["val_accuracy"], 4),
                "test_accuracy": round(test_accuracy, 4),
                "seconds_per_epoch": round((time.perf_counter() - started) / args.epochs, 1),
                "threads": torch.get_num_threads(),
            }
        )
        print(rows[-1], flush=True)
    print("\n| arch | recipe | batch augmentation | best epoch | val acc | test acc | s/epoch |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['arch']} | {row['recipe']} | {row['batch_augmentation']} | {row['best_epoch']} | {row['val_accuracy']:.4f} "
            f"| {row['test_accuracy']:.4f} | {row['seconds_per_epoch']} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
