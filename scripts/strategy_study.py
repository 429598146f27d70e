"""The series' exercise: does augmenting another subset help? Fine-tune once per strategy and seed.

Needs the dataset's hardness_scores[train] and lenet_checkpoint materialized (MNIST_ASSETS_HOME,
MNIST_ASSETS_NAMESPACE). For each strategy and seed: select the budget, augment (10 copies),
fine-tune from the checkpoint on train + augmented with the finetuned_model asset's own step
(ml/models/finetuning.finetune: its recipe, seeds and standardization, or the flags), and score the test
split against the checkpoint's predictions. Prints mean and standard deviation of test accuracy,
fixed and broken. The selection and augmentation are the assets' own too (ml/models/augmentation.augment_chosen),
on the dataset's declaration; the copies stay in memory (the asset reads them back from FiftyOne, in
source order, so its batches differ: the same recipe, not the same weights).

    .venv/bin/python scripts/strategy_study.py --seeds 51 52 53 --control
    .venv/bin/python scripts/strategy_study.py --dataset fashion_mnist --strategies hardest misclassified
    .venv/bin/python scripts/strategy_study.py --recipe series --lr 1e-4 --batch-augmentation none --keep best
"""

import argparse
import json

import numpy as np

from mnist_assets.assets.data import checkpoint_path, split_tensors
from mnist_assets.ml.data.tensors import SplitTensors
from mnist_assets.ml.models import finetuning
from mnist_assets.ml.models.augmentation import BATCH_AUGMENTATIONS, augment_chosen
from mnist_assets.ml.models.checkpoints import load_models
from mnist_assets.ml.models.selection import STRATEGIES, read_scores
from mnist_assets.ml.models.training import KEEP, RECIPES, predict
from mnist_assets.pipeline import declared_pipeline
from mnist_assets.resources import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", help="a declared dataset (mnist_assets/defs/<name>/defs.yaml)")
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    settings = Settings.from_env()
    settings.configure_torch()
    device = settings.torch_device()
    pipeline = declared_pipeline(args.dataset)
    store = pipeline.store(settings)
    loaded = {s: split_tensors(pipeline, settings, s, store) for s in ("train", "validation", "test")}
    data = {s: tensors for s, (_, _, tensors) in loaded.items()}
    scores = read_scores(loaded["train"][1])
    checkpoint = checkpoint_path(store, "lenet_checkpoint")
    ((base, payload),) = load_models(checkpoint)
    test = finetuning.standardized_as(payload, data["test"])  # as the checkpoint and every fine-tuned model read it
    test_labels = test.labels.numpy()
    base_correct = predict(base, test, device)[0].argmax(1) == test_labels
    print(f"{args.dataset} checkpoint: test accuracy {base_correct.mean():.4f}")

    chosen_settings = {
        "recipe": args.recipe,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_augmentation": args.batch_augmentation,
        "keep": args.keep,
    }
    runs = []
    strategies = args.strategies + (["none"] if args.control else [])
    train = data["train"]
    for strategy in strategies:
        for seed in args.seeds:
            if strategy == "none":
                chosen, extra = np.zeros(0, dtype=np.int64), SplitTensors(train.images[:0], train.labels[:0], [])
            else:
                made = augment_chosen(train.images, scores, strategy, args.budget, args.copies, seed, pipeline.spec.flips)
                chosen = made.chosen
                extra = SplitTensors(made.images, train.labels[made.sources], [f"aug-{i}" for i in range(len(made.sources))])
            ((model, payload),) = load_models(checkpoint)
            tuned = finetuning.finetune(
                pipeline.spec,
                model,
                payload,
                train,
                extra,
                data["validation"],
                {**chosen_settings, "seed": seed},
                env_epochs=settings.epochs,
                device=device,
            )
            correct = predict(tuned.model, test, device)[0].argmax(1) == test_labels
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

    config = tuned.config
    print(
        f"\n{args.dataset}: recipe {config.recipe}, lr {config.lr}, {config.epochs} epochs, batch augmentation "
        f"{config.batch_augmentation}, keep {config.keep}, budget {args.budget} x {args.copies}; checkpoint {base_correct.mean():.4f}"
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
    return runs


if __name__ == "__main__":
    main()
