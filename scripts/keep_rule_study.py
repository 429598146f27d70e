"""Which training state to keep when validation labels are as noisy as train's, and what a review
round should fix first: LeNet-5 (the `checkpoint` role's recipe) on MNIST with declared label noise on
train and validation, each keep rule (ml/models/training.py KEEP) scored on the clean test labels, over seeds,
before and after one simulated review round of `--budget` (a share of train) answered with the truth:
- `train`: the top of train's review order (out-of-fold LeNets' logits, as lenet_oof_predictions);
- `validation`: the top of validation's (logits of a LeNet trained on train, as the fold ensemble);
- `validation_first`: validation's likely errors (cleanlab's label issues there) first, then train's top.

    .venv/bin/python scripts/keep_rule_study.py [--rate 0.3] [--limit 2000] [--epochs 20] [--seeds 2] [--out F]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_assets.assets.data import pixel_statistics  # noqa: E402
from mnist_assets.ml.data.label_noise import noisy_declaration  # noqa: E402
from mnist_assets.ml.data.sources import load_source, split_of  # noqa: E402
from mnist_assets.ml.data.tensors import SplitTensors, channels_first  # noqa: E402
from mnist_assets.ml.models.architectures import build_model  # noqa: E402
from mnist_assets.ml.models.training import KEEP, TrainConfig, evaluate, fit, predict  # noqa: E402
from mnist_assets.ml.quality.quality_scores import label_quality  # noqa: E402
from mnist_assets.ml.quality.review_order import review_priority  # noqa: E402
from mnist_assets.pipeline import declared_spec  # noqa: E402

ARMS = ("noisy", "train", "validation", "validation_first")


def tensors(images, labels, mean, std) -> SplitTensors:
    return SplitTensors(channels_first(images), torch.as_tensor(np.asarray(labels)), [], mean, std)


def trained(data_train, data_validation, config, seed):
    model = build_model("lenet5", seed)
    result = fit(model, data_train, data_validation, config)
    return model, result


def logits_of(model, data) -> np.ndarray:
    return predict(model, data)[0]


def highest_first(priority: np.ndarray, count: int) -> np.ndarray:
    return np.argsort(-priority, kind="stable")[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--sparsity", type=float, default=0.0, help="label_noise.sparsity: 0 spreads flips over all class pairs")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.1, help="reviews, as a share of train")
    parser.add_argument("--keep", action="append", help="keep rules to compare (default all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    spec = noisy_declaration(declared_spec("mnist"), args.rate, args.sparsity, 0, splits=("train", "validation"))
    source = load_source(spec, None, Path(".mnist_assets/downloads"))
    train, validation, test = (split_of(source, spec, split, args.limit) for split in ("train", "validation", "test"))
    mean, std = pixel_statistics(train.images)
    make = lambda part, labels: tensors(part.images, labels, mean, std)  # noqa: E731
    test_data = make(test, test.labels)
    budget = int(round(args.budget * len(train.labels)))
    rows = []
    for seed in tqdm(range(args.seeds), desc="seeds"):
        base = TrainConfig(epochs=args.epochs, seed=seed, keep="accuracy", batch_augmentation=spec.checkpoint_augmentation)
        noisy_validation = make(validation, validation.labels)
        # Review orders as the platform computes them: train from out-of-fold models, validation from a
        # model trained on all of train.
        halves = np.arange(len(train.labels)) % 2
        oof = np.zeros((len(train.labels), len(spec.classes())), dtype=np.float32)
        for fold in (0, 1):
            inside, outside = halves != fold, halves == fold
            model, _ = trained(make_subset(train, inside, mean, std), noisy_validation, base, seed)
            oof[outside] = logits_of(model, make_subset(train, outside, mean, std))
        model, _ = trained(make(train, train.labels), noisy_validation, base, seed)
        validation_logits = logits_of(model, noisy_validation)
        train_order = highest_first(review_priority(oof, train.labels), len(train.labels))
        validation_order = highest_first(review_priority(validation_logits, validation.labels), len(validation.labels))
        _, issues = label_quality(validation_logits, validation.labels)
        likely = [i for i in validation_order if issues[i]]
        reviews = {
            "noisy": ([], []),
            "train": (train_order[:budget], []),
            "validation": ([], validation_order[:budget]),
            "validation_first": (train_order[: max(budget - len(likely), 0)], likely[:budget]),
        }
        for arm, (train_fixed, validation_fixed) in reviews.items():
            train_labels, validation_labels = train.labels.copy(), validation.labels.copy()
            train_labels[train_fixed] = train.clean_labels[train_fixed]
            validation_labels[validation_fixed] = validation.clean_labels[validation_fixed]
            for keep in args.keep or KEEP:
                config = TrainConfig(epochs=args.epochs, seed=seed, keep=keep, batch_augmentation=spec.checkpoint_augmentation)
                model, result = trained(make(train, train_labels), make(validation, validation_labels), config, seed)
                clean_test = evaluate(model, test_data, "cpu")[1]
                rows.append(
                    {
                        "seed": seed,
                        "arm": arm,
                        "keep": keep,
                        "epoch": result.best_epoch,
                        "train_fixed": int((train.labels[train_fixed] != train.clean_labels[train_fixed]).sum()),
                        "validation_fixed": int((validation.labels[validation_fixed] != validation.clean_labels[validation_fixed]).sum()),
                        "clean_test_accuracy": round(clean_test, 4),
                    }
                )
                print(rows[-1], flush=True)
    summary = {
        arm: {
            keep: round(float(np.mean([r["clean_test_accuracy"] for r in rows if r["keep"] == keep and r["arm"] == arm])), 4)
            for keep in args.keep or KEEP
        }
        for arm in ARMS
    }
    print(
        json.dumps(
            {
                "rate": args.rate,
                "sparsity": args.sparsity,
                "limit": args.limit,
                "epochs": args.epochs,
                "budget": budget,
                "mean_clean_test_accuracy": summary,
            }
        )
    )
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows, "summary": summary}, indent=1))


def make_subset(part, mask, mean, std) -> SplitTensors:
    return tensors(part.images[mask], part.labels[mask], mean, std)


if __name__ == "__main__":
    main()
