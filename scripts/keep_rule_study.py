"""Which training state to keep when validation labels are as noisy as train's: LeNet-5 (the
`checkpoint` role's recipe) on MNIST with declared label noise on train and validation, each keep
rule (ml/training.py KEEP) scored on the clean test labels, over seeds.

    .venv/bin/python scripts/keep_rule_study.py [--rate 0.3] [--limit 10000] [--epochs 10] [--seeds 3] [--out F]
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
from mnist_assets.ml.label_noise import noisy_declaration  # noqa: E402
from mnist_assets.ml.models import build_model  # noqa: E402
from mnist_assets.ml.sources import load_source, split_of  # noqa: E402
from mnist_assets.ml.tensors import SplitTensors, channels_first  # noqa: E402
from mnist_assets.ml.training import KEEP, TrainConfig, evaluate, fit  # noqa: E402
from mnist_assets.pipeline import declared_spec  # noqa: E402


def tensors(split, labels, mean, std) -> SplitTensors:
    return SplitTensors(channels_first(split.images), torch.as_tensor(labels), [], mean, std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    spec = noisy_declaration(declared_spec("mnist"), args.rate, 0.0, 0, splits=("train", "validation"))
    source = load_source(spec, None, Path(".mnist_assets/downloads"))
    train, validation, test = (split_of(source, spec, split, args.limit) for split in ("train", "validation", "test"))
    mean, std = pixel_statistics(train.images)
    data = {
        "train": tensors(train, train.labels, mean, std),
        "validation": tensors(validation, validation.labels, mean, std),
        "test": tensors(test, test.labels, mean, std),
    }
    rows = []
    for seed in tqdm(range(args.seeds), desc="seeds"):
        for keep in KEEP:
            model = build_model("lenet5", seed)
            config = TrainConfig(epochs=args.epochs, seed=seed, keep=keep, batch_augmentation=spec.checkpoint_augmentation)
            result = fit(model, data["train"], data["validation"], config)
            clean_test = evaluate(model, data["test"], "cpu")[1]
            rows.append({"seed": seed, "keep": keep, "epoch": result.best_epoch, "clean_test_accuracy": round(clean_test, 4)})
            print(rows[-1], flush=True)
    summary = {keep: round(float(np.mean([r["clean_test_accuracy"] for r in rows if r["keep"] == keep])), 4) for keep in KEEP}
    print(json.dumps({"rate": args.rate, "limit": args.limit, "epochs": args.epochs, "mean_clean_test_accuracy": summary}))
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
