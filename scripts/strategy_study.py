"""The series' exercise: does augmenting another subset help? Fine-tune once per strategy and seed.

Needs hardness_scores[train] and lenet_checkpoint materialized (MNIST_ASSETS_HOME,
MNIST_ASSETS_NAMESPACE). For each strategy and seed: select the budget, augment
(10 copies), fine-tune from the LeNet checkpoint on train + augmented with the
finetuned_model asset's defaults (or the flags), and score the test split against
LeNet's predictions. Prints mean and standard deviation of test accuracy, fixed and broken. The
selection, augmentation and fine-tuning recipe are the assets' own (ml/augmentation.augment_chosen,
ml/recipes.resolve), on the dataset's declaration.

    .venv/bin/python scripts/strategy_study.py --seeds 51 52 53 --control
    .venv/bin/python scripts/strategy_study.py --recipe series --lr 1e-4 --batch-augmentation none --keep best
"""

import argparse
import json

import numpy as np

from mnist_assets.assets.data import split_tensors
from mnist_assets.ml import recipes
from mnist_assets.ml.augmentation import BATCH_AUGMENTATIONS, augment_chosen
from mnist_assets.ml.checkpoints import load_models
from mnist_assets.ml.selection import STRATEGIES, read_scores
from mnist_assets.ml.tensors import SplitTensors, concatenate
from mnist_assets.ml.training import KEEP, RECIPES, fit, predict
from mnist_assets.pipeline import declared_pipeline
from mnist_assets.resources import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[51, 52, 53])
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=None, help="default: the fine-tuning recipe's")
    parser.add_argument("--lr", type=float, default=None, help="default: the fine-tuning recipe's")
    parser.add_argument("--recipe", default=None, choices=RECIPES)
    parser.add_argument(
        "--batch-augmentation",
        default=None,
        choices=BATCH_AUGMENTATIONS,
        help="augment every training batch on the fly",
    )
    parser.add_argument("--keep", default=None, choices=KEEP, help="the state kept: lowest validation loss, or the last epoch")
    parser.add_argument(
        "--control", action="store_true", help="also fine-tune with no augmented set (train only), to see what the subset itself adds"
    )
    parser.add_argument("--json", help="also write every run to this file")
    args = parser.parse_args()

    settings = Settings.from_env()
    settings.configure_torch()
    pipeline = declared_pipeline("mnist")
    loaded = {s: split_tensors(pipeline, settings, s) for s in ("train", "validation", "test")}
    data = {s: tensors for s, (_, _, tensors) in loaded.items()}
    scores = read_scores(loaded["train"][1])
    checkpoint = settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt")
    ((base, _),) = load_models(checkpoint)
    test_labels = data["test"].labels.numpy()
    base_correct = predict(base, data["test"])[0].argmax(1) == test_labels
    print(f"LeNet checkpoint: test accuracy {base_correct.mean():.4f}")

    runs = []
    strategies = args.strategies + (["none"] if args.control else [])
    for strategy in strategies:
        for seed in args.seeds:
            train = data["train"]
            if strategy == "none":
                chosen, extra = np.zeros(0, dtype=np.int64), SplitTensors(train.images[:0], train.labels[:0], [], train.mean, train.std)
            else:
                made = augment_chosen(train.images, scores, strategy, args.budget, args.copies, seed, pipeline.spec.flips)
                chosen = made.chosen
                extra = SplitTensors(
                    made.images, train.labels[made.sources], [f"aug-{i}" for i in range(len(made.sources))], train.mean, train.std
                )
            ((model, payload),) = load_models(checkpoint)
            chosen_settings = {
                "recipe": args.recipe,
                "epochs": args.epochs,
                "lr": args.lr,
                "seed": seed,
                "batch_augmentation": args.batch_augmentation,
                "keep": args.keep,
            }
            config = recipes.resolve("finetune", pipeline.spec, chosen_settings, env_epochs=settings.epochs, arch=payload["arch"])
            fit(model, concatenate(data["train"], extra), data["validation"], config)
            correct = predict(model, data["test"])[0].argmax(1) == test_labels
            run = {
                "strategy": strategy,
                "seed": seed,
                "selected": len(chosen),
                "test_accuracy": float(correct.mean()),
                "fixed": int((~base_correct & correct).sum()),
                "broken": int((base_correct & ~correct).sum()),
            }
            runs.append(run)
            print(run, flush=True)

    print(
        f"\nrecipe {config.recipe}, lr {config.lr}, {config.epochs} epochs, batch augmentation {config.batch_augmentation}, "
        f"keep {config.keep}, "
        f"budget {args.budget} x {args.copies}; LeNet {base_correct.mean():.4f}"
    )
    print("| strategy | selected | test accuracy (mean +- sd) | fixed | broken |\n|---|---|---|---|---|")
    for strategy in strategies:
        rows = [r for r in runs if r["strategy"] == strategy]
        acc = np.array([r["test_accuracy"] for r in rows])
        fixed = np.array([r["fixed"] for r in rows])
        broken = np.array([r["broken"] for r in rows])
        print(
            f"| {strategy} | {rows[0]['selected']} | {acc.mean():.4f} +- {acc.std():.4f} "
            f"| {fixed.mean():.1f} +- {fixed.std():.1f} | {broken.mean():.1f} +- {broken.std():.1f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(runs, handle, indent=2)


if __name__ == "__main__":
    main()
