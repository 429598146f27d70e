"""Train each (architecture, recipe) with the same code and data and print test accuracy.

Reads the splits that <dataset>/raw_dataset put in the FiftyOne dataset (MNIST_ASSETS_HOME,
MNIST_ASSETS_NAMESPACE), so materialize raw_dataset for all three splits first (--dataset, default mnist);
or, with --from-source, an IDX dataset's files directly (the same split and padding as ingest, no database).

    .venv/bin/python scripts/compare_training.py --runs lenet5:onecycle lenet5:series resnet_small:onecycle
    .venv/bin/python scripts/compare_training.py --runs lenet5:onecycle:affine   # with a batch augmentation
    .venv/bin/python scripts/compare_training.py --from-source --dataset fashion_mnist --runs vgg_small:onecycle:shift \
        --epochs 15 --batch-size 128 --label-smoothing 0.1 --ema 0.999 --json rows.json   # appends to rows.json
"""

import argparse
import json
import time
from pathlib import Path

import torch

from mnist_assets.assets.data import pixel_statistics, split_tensors
from mnist_assets.ml.data.dataset_spec import SPLITS
from mnist_assets.ml.models.architectures import build_model, parameter_count
from mnist_assets.ml.models.precision import PRECISIONS
from mnist_assets.ml.models.training import KEEP, TrainConfig, evaluate, fit
from mnist_assets.ml.release.export import Probabilities, probabilities
from mnist_assets.pipeline import declared_pipeline
from mnist_assets.resources import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs", nargs="+", default=["lenet5:onecycle", "lenet5:series"], help="arch:recipe or arch:recipe:batch_augmentation"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=51)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--ema", type=float, default=0.0, help="decay of the weights' moving average (0: off)")
    parser.add_argument("--erasing", type=float, default=0.0, help="random erasing: the share of training images given a blank rectangle")
    parser.add_argument("--keep", default="best", choices=KEEP, help="the lowest validation loss, or the last epoch")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="training's autocast (auto: bf16 where the CPU has it)")
    parser.add_argument("--from-source", action="store_true", help="read an IDX dataset's files, not the FiftyOne dataset")
    parser.add_argument("--json", help="also append the rows to this JSON file")
    parser.add_argument("--dataset", default="mnist", help="a declared dataset (mnist_assets/defs/<name>)")
    args = parser.parse_args()

    settings = Settings.from_env()
    settings.configure_torch()
    pipeline = declared_pipeline(args.dataset)
    data = source_tensors(pipeline.spec) if args.from_source else {s: split_tensors(pipeline, settings, s)[2] for s in SPLITS}
    rows = []
    for run in args.runs:
        arch, recipe, *augmentation = run.split(":")
        config = TrainConfig(
            arch=arch,
            recipe=recipe,
            epochs=args.epochs,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            label_smoothing=args.label_smoothing,
            ema=args.ema,
            random_erasing=args.erasing,
            keep=args.keep,
            precision=args.precision,
            batch_augmentation=augmentation[0] if augmentation else "none",
            horizontal_flip=pipeline.spec.flips,
        )
        started = time.perf_counter()
        model = build_model(arch, args.seed, **pipeline.spec.model_shape())
        # fit leaves the model holding its best validation-loss state.
        result = fit(model, data["train"], data["validation"], config, on_epoch=lambda r, run=run: print(run, r, flush=True))
        _, test_accuracy = evaluate(model, data["test"], "cpu")
        test = data["test"]
        mirror_accuracy = None
        if pipeline.spec.flips:  # the release's test-time mirror, where the classes allow it
            mirrored = Probabilities([model], test.mean, test.std, mirror=True)
            mirror_accuracy = float((probabilities(mirrored, test.images).argmax(1) == test.labels.numpy()).mean())
        rows.append(
            {
                "dataset": args.dataset,
                "arch": arch,
                "parameters": parameter_count(model),
                "recipe": recipe,
                "batch_augmentation": config.batch_augmentation,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "label_smoothing": args.label_smoothing,
                "ema": args.ema,
                "random_erasing": args.erasing,
                "keep": args.keep,
                "precision": args.precision,
                "seed": args.seed,
                "best_epoch": result.best_epoch,
                "val_accuracy": round(result.best_metrics["val_accuracy"], 4),
                "test_accuracy": round(test_accuracy, 4),
                "trained_val_accuracy": result.best_metrics.get("trained_val_accuracy"),  # with ema: the weights before averaging
                "test_accuracy_mirror": round(mirror_accuracy, 4) if mirror_accuracy is not None else None,
                "seconds_per_epoch": round((time.perf_counter() - started) / args.epochs, 1),
                "threads": torch.get_num_threads(),
            }
        )
        print(rows[-1], flush=True)
    print("\n| arch | params | recipe | augmentation | epochs | smoothing | ema | best | val (trained) | test | mirrored | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        trained = f" ({row['trained_val_accuracy']:.4f})" if row["trained_val_accuracy"] is not None else ""
        print(
            f"| {row['arch']} | {row['parameters']} | {row['recipe']} | {row['batch_augmentation']} | {row['epochs']} | "
            f"{row['label_smoothing']} | {row['ema']} | {row['best_epoch']} | {row['val_accuracy']:.4f}{trained} | "
            f"{row['test_accuracy']:.4f} | {row['test_accuracy_mirror'] or ''} | {row['seconds_per_epoch']} |"
        )
    if args.json:
        path = Path(args.json)
        earlier = json.loads(path.read_text()) if path.is_file() else []
        path.write_text(json.dumps(earlier + rows, indent=2) + "\n")


def source_tensors(spec) -> dict:
    """An IDX dataset's three splits straight from its files, split and padded as ingest does, each
    standardized by the train split's pixel statistics."""
    import tempfile

    from mnist_assets.ml.data.dataset_spec import SPLITS
    from mnist_assets.ml.data.sources import load_source, split_of
    from mnist_assets.ml.data.tensors import SplitTensors, channels_first

    arrays = load_source(spec, None, Path(tempfile.gettempdir()) / "mnist_assets_downloads")
    splits = {split: split_of(arrays, spec, split, None) for split in SPLITS}
    statistics = pixel_statistics(splits["train"].images)
    return {
        split: SplitTensors(channels_first(part.images), torch.as_tensor(part.labels), [str(i) for i in part.indices], *statistics)
        for split, part in splits.items()
    }


if __name__ == "__main__":
    main()
