"""Which review order finds wrong labels best: every candidate ranking (ml/review_order.py) on a
declared noisy dataset, against the truth (`ground_truth_clean`).

Materializes, for a noisy declaration of the source, what the train split's ranking needs (the
ingest, the labels in use, the out-of-fold models: `lenet_oof_predictions`, each sample scored by a
model that did not see it) and prints, per ranking, average precision over the whole train split and
precision and recall after reviewing 1 to 30% of it (random order: precision = the noise rate).

    .venv/bin/python scripts/review_order_study.py --source fashion-mnist --rate 0.2 --sparsity 0.0 [--limit N] [--epochs E] [--out F]
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

from mnist_assets.ml.dataset_spec import DatasetSpec  # noqa: E402
from mnist_assets.ml.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN, LENET_OOF_PREDICTIONS  # noqa: E402
from mnist_assets.ml.review_order import ranking_metrics, rankings  # noqa: E402


def noisy_spec(source: str, rate: float, sparsity: float, seed: int) -> DatasetSpec:
    name = f"noisy_{source.replace('-', '_')}_{round(rate * 100)}_{round(sparsity * 100)}"
    return DatasetSpec(
        name=name,
        source=source,
        image_size=32 if source == "fashion-mnist" else 28,
        label_noise={"rate": rate, "sparsity": sparsity, "seed": seed},
    )


def materialize_for_ranking(spec: DatasetSpec, settings) -> None:
    """The assets the train split's out-of-sample ranking needs, every split, in one ephemeral instance."""
    from mnist_assets.pipeline import build_pipeline_defs
    from mnist_assets.run_all import materialize_stage, stages

    resources = {"settings": settings}
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=resources))
    graph = defs.resolve_asset_graph()
    wanted = dg.AssetSelection.assets(dg.AssetKey([spec.name, "lenet_oof_predictions"])).upstream().resolve(graph)
    instance = dg.DagsterInstance.ephemeral()
    for keys, partitioned in stages(graph, [spec.name]):
        chosen = [key for key in keys if key in wanted]
        for partition in ("train", "validation") if partitioned else [None]:
            if chosen:
                started = time.perf_counter()
                result = materialize_stage(instance, chosen, partition, resources, defs.assets)
                names = ", ".join(key.path[-1] for key in chosen)
                print(f"  {names}{f'[{partition}]' if partition else ''}: {time.perf_counter() - started:.0f} s", flush=True)
                if not result.success:
                    raise SystemExit(f"{names} [{partition}] failed")


def study(spec: DatasetSpec, settings) -> dict:
    from mnist_assets.ml.fiftyone_store import read_vectors, usable_view
    from mnist_assets.ml.tensors import class_positions

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
    args = parser.parse_args()
    spec = noisy_spec(args.source, args.rate, args.sparsity, args.seed)
    settings = Settings.from_env({**os.environ, **({"MNIST_ASSETS_LIMIT": str(args.limit)} if args.limit else {})})
    if args.epochs:
        settings = Settings(**{**settings.model_dump(), "epochs": args.epochs})
    started = time.perf_counter()
    materialize_for_ranking(spec, settings)
    result = {**study(spec, settings), "seconds": round(time.perf_counter() - started), "limit": args.limit, "epochs": args.epochs}
    print_table(result)
    if args.out:
        earlier = json.loads(args.out.read_text()) if args.out.is_file() else []
        args.out.write_text(json.dumps([*earlier, result], indent=2) + "\n")


if __name__ == "__main__":
    main()
