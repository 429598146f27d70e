"""Which review order finds wrong labels best: every candidate ranking (ml/quality/review_order.py) on a
declared noisy dataset, against the truth (`ground_truth_clean`).

Materializes, for a noisy declaration of the source, what the train split's ranking needs (the
ingest, the labels in use, the out-of-fold models: `lenet_oof_predictions`, each sample scored by a
model that did not see it) and prints, per ranking, average precision over the whole train split and
precision and recall after reviewing 1 to 30% of it (random order: precision = the noise rate).

    .venv/bin/python scripts/review_order_study.py --source fashion-mnist --rate 0.2 --sparsity 0.0 [--limit N] [--epochs E] [--out F]

With --confirmed-errors it ranks MNIST's test split as declared (no noise) instead, against the 15
test label errors human reviewers confirmed (ml/data/label_errors.py), with the fold ensemble's
out-of-sample probabilities.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN, LENET_OOF_PREDICTIONS  # noqa: E402
from mnist_assets.ml.data.dataset_spec import DatasetSpec  # noqa: E402
from mnist_assets.ml.data.label_noise import noisy_declaration  # noqa: E402
from mnist_assets.ml.quality.review_order import ranking_metrics, rankings  # noqa: E402
from mnist_assets.pipeline import declared_spec  # noqa: E402


def materialize_for_ranking(spec: DatasetSpec, settings, target: str = "lenet_oof_predictions", partitions=("train", "validation")) -> None:
    """What a ranking needs (`target` and its upstream) for `partitions`, in one ephemeral instance."""
    from mnist_assets.pipeline import build_pipeline_defs
    from mnist_assets.run_all import materialize_upstream

    resources = {"settings": settings}
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=resources))
    materialize_upstream(defs, [dg.AssetKey([spec.name, target])], dg.DagsterInstance.ephemeral(), resources, partitions=partitions)


def confirmed_errors(settings) -> dict:
    """Every ranking of MNIST's test split (the fold ensemble's out-of-sample logits, the source's labels)
    against the 15 label errors human reviewers confirmed: their ranks, how many in the top 20/50/100,
    and average precision."""
    from sklearn.metrics import average_precision_score

    from mnist_assets.ml.core.field_names import FOLD_ENSEMBLE_PREDICTIONS, GROUND_TRUTH_ORIGINAL, SOURCE_INDEX
    from mnist_assets.ml.data.label_errors import CONFIRMED_TEST_LABEL_ERRORS, known_errors_in_tops, ranks_of_known_errors
    from mnist_assets.ml.data.tensors import class_positions
    from mnist_assets.ml.store.fiftyone_store import read_vectors, split_view

    spec = declared_spec("mnist")
    materialize_for_ranking(spec, settings, "fold_ensemble_predictions", partitions=("train", "validation", "test"))
    view = split_view(settings.store(spec.name).dataset(), "test")
    source_index, labels = view.values([SOURCE_INDEX, f"{GROUND_TRUTH_ORIGINAL}.label"])
    logits = read_vectors(view, f"{FOLD_ENSEMBLE_PREDICTIONS}.logits")
    known = np.isin(source_index, CONFIRMED_TEST_LABEL_ERRORS)
    rows = {}
    for name, priority in rankings(logits, class_positions(labels, spec.classes())).items():
        ranks = sorted(rank + 1 for rank in ranks_of_known_errors(source_index, priority).values())
        tops = {f"top{top}": found for top, found in known_errors_in_tops(source_index, priority).items()}
        rows[name] = {**tops, "average_precision": float(average_precision_score(known, priority)), "ranks": ranks}
    return {"dataset": "mnist", "test_samples": len(source_index), "confirmed_errors": int(known.sum()), "rankings": rows}


def study(spec: DatasetSpec, settings) -> dict:
    from mnist_assets.ml.data.tensors import class_positions
    from mnist_assets.ml.store.fiftyone_store import read_vectors, usable_view

    view = usable_view(settings.store(spec.name).dataset(), "train")
    noisy, clean = view.values([f"{GROUND_TRUTH}.label", f"{GROUND_TRUTH_CLEAN}.label"])
    logits = read_vectors(view, f"{LENET_OOF_PREDICTIONS}.logits")
    labels = class_positions(noisy, spec.classes())
    wrong = np.array(noisy) != np.array(clean)
    rows = {name: ranking_metrics(priority, wrong) for name, priority in rankings(logits, labels).items()}
    rows["random order"] = ranking_metrics(np.random.default_rng(0).random(len(wrong)), wrong)
    return {"dataset": spec.name, "label_noise": spec.label_noise, "train_samples": len(wrong), "wrong": int(wrong.sum()), "rankings": rows}


def print_table(result: dict) -> None:
    keys = ["average_precision", "precision_at_1%", "precision_at_5%", "recall_at_10%", "recall_at_20%", "recall_at_30%"]
    print(f"\n{result['dataset']}: {result['wrong']} wrong of {result['train_samples']} train labels")
    print("| ranking | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, metrics in sorted(result["rankings"].items(), key=lambda item: -item[1]["average_precision"]):
        print(f"| {name} | " + " | ".join(f"{metrics[key]:.3f}" for key in keys) + " |")


def main() -> None:
    from mnist_assets.resources import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("mnist", "fashion-mnist"), default="fashion-mnist")
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--sparsity", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="samples per split (default: all)")
    parser.add_argument("--epochs", type=int, help="every LeNet's epochs (default: the declaration's)")
    parser.add_argument("--out", type=Path, help="append the result to this JSON list")
    parser.add_argument("--confirmed-errors", action="store_true", help="MNIST as declared: rank its 15 confirmed test label errors")
    args = parser.parse_args()
    spec = noisy_declaration(declared_spec(args.source.replace("-", "_")), args.rate, args.sparsity, args.seed)
    settings = Settings.from_env({**os.environ, **({"MNIST_ASSETS_LIMIT": str(args.limit)} if args.limit else {})})
    if args.epochs:
        settings = Settings(**{**settings.model_dump(), "epochs": args.epochs})
    started = time.perf_counter()
    if args.confirmed_errors:
        result = confirmed_errors(settings)
        for name, row in sorted(result["rankings"].items(), key=lambda item: -item[1]["average_precision"]):
            print(f"| {name} | {row['top20']} | {row['top50']} | {row['top100']} | {row['average_precision']:.3f} | {row['ranks']} |")
    else:
        materialize_for_ranking(spec, settings)
        result = study(spec, settings)
        print_table(result)
    result.update(seconds=round(time.perf_counter() - started), limit=args.limit, epochs=args.epochs)
    if args.out:
        earlier = json.loads(args.out.read_text()) if args.out.is_file() else []
        args.out.write_text(json.dumps([*earlier, result], indent=2) + "\n")


if __name__ == "__main__":
    main()
