"""Labels spent against accuracy won: which images to label next, measured where the truth is known.

Per dataset (MNIST, Fashion-MNIST) the train split's labels are all hidden (`label_budget:
{labeled: 0}`, the truth kept as `ground_truth_clean` keeps it). Per arm and seed, from no labels:
1. the arm proposes the next batch (ml/quality/label_requests.py on the pool's pixel embedding, as the
   label_requests asset does; the arms that follow a model take their first batch at random);
2. a simulated annotator answers it with the true labels as `label` decisions in the dataset's
   decision log (`via: simulated-annotator`, checked against the source as `record_decisions` checks
   a person's), and the labels in use are read back from the log;
3. LeNet trains on them with lenet_checkpoint's recipe (ml/models/recipes.py: with fewer labels than
   validation holds, the few-labels recipe: the last state kept, the batch affine), and is scored
   on the test split;
until each cumulative budget is spent. Arms: `random`, `default` (the platform's choice,
choose_strategy), and typiclust, probcover, margin_clusters and badge up to --slow-arms-up-to.
Beside them, LeNet trained with its usual recipe on every train label: the full-data model whose
accuracy the budgets are measured against (labels needed to reach 90, 95 and 99% of it).

    .venv/bin/python benchmarks/bench_active_learning.py            # both datasets, every arm, 3 seeds, 10 to 2,000 labels (hours)
    .venv/bin/python benchmarks/bench_active_learning.py --quick    # MNIST, a 5,000-image pool, 10 to 100 labels, random and default
    .venv/bin/python benchmarks/bench_active_learning.py --datasets fashion_mnist --seeds 1 --arms random default
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # bench_label_cleaning's daemon and its code location
sys.path.insert(0, str(REPO / "tests"))  # processes.py: the services' helpers the tests use

BUDGETS = (10, 20, 50, 100, 200, 500, 1000, 2000)
ARMS = ("random", "default", "typiclust", "probcover", "margin_clusters", "badge")
FOLLOW_A_MODEL = ("margin_clusters", "badge")  # their first batch is random: no model yet
SHARES_OF_FULL = (0.90, 0.95, 0.99)
VIA = "simulated-annotator"
WATCHED_VALIDATION = 1000


@dataclass
class Pool:
    """One dataset's train split as the label_requests asset sees it, and the splits models are scored on."""

    name: str
    spec: object
    images: np.ndarray  # uint8 [N, H, W]
    truth: np.ndarray  # class positions
    indices: np.ndarray  # source_index of each
    embedding: np.ndarray
    validation: object  # SplitTensors
    test: object  # SplitTensors
    sources: dict  # decision_sources: what the decisions are checked against
    mean: float = 0.0
    std: float = 1.0


@dataclass
class Curve:
    arm: str
    seed: int
    points: list[dict] = field(default_factory=list)  # budget, accuracy, strategy, seconds


def load_pool(name: str, limit: int | None, test_limit: int | None, work: Path, embedding: str = "declared") -> Pool:
    from mnist_assets.assets.data import pixel_statistics
    from mnist_assets.ml.data.pixel_embedding import pool_embedding
    from mnist_assets.ml.data.sources import decision_sources, load_source, split_of
    from mnist_assets.pipeline import declared_spec

    spec = declared_spec(name)
    chosen = {} if embedding == "declared" else {"pool_embedding": embedding}  # the run's choice, else the declaration's
    spec = spec.model_copy(update={"name": f"{spec.name}_active", "label_budget": {"labeled": 0, "seed": 0}, **chosen})
    arrays = load_source(spec, None, work / "downloads")
    train = split_of(arrays, spec, "train", limit)
    assert (train.labels < 0).all() and train.clean_labels is not None, "every train label hidden, the truth kept"
    images = train.images
    mean, std = pixel_statistics(images)  # as ingest records the train split's

    def tensors(split: str, cap: int | None):
        data = split_of(arrays, spec, split, cap)
        return as_tensors(data.images, data.labels, mean, std)

    return Pool(
        name=name,
        spec=spec,
        images=images,
        truth=train.clean_labels,
        indices=train.indices,
        embedding=pool_embedding(images, spec.pool_embedding, seed=spec.split_seed),
        # keeping the last state, validation only draws the curve: a thousand samples draw it
        validation=tensors("validation", min(test_limit or WATCHED_VALIDATION, WATCHED_VALIDATION)),
        test=tensors("test", test_limit),
        sources=decision_sources(arrays, spec),
        mean=mean,
        std=std,
    )


def as_tensors(images: np.ndarray, labels: np.ndarray, mean: float, std: float, ids: bool = False):
    """uint8 images and class positions as the SplitTensors training reads, standardized by `mean` and
    `std`; with `ids`, each sample's position as its id."""
    import torch

    from mnist_assets.ml.data.tensors import SplitTensors, channels_first

    sample_ids = [str(position) for position in range(len(images))] if ids else []
    return SplitTensors(channels_first(torch.from_numpy(images)), torch.from_numpy(labels).long(), sample_ids, mean, std)


def annotate(log, pool: Pool, positions: np.ndarray) -> None:
    """The simulated annotator: the true class of each sample asked for, as `label` decisions."""
    from mnist_assets.ml.decisions import decisions_from_rows

    classes = pool.spec.classes()
    rows = [
        (line, {"split": "train", "source_index": int(pool.indices[p]), "decision": "label", "label": classes[pool.truth[p]]})
        for line, p in enumerate(positions, start=1)
    ]
    in_use = {("train", int(pool.indices[p])): None for p in positions}
    log.append(decisions_from_rows(rows, VIA, pool.sources, classes, in_use))


def labels_from_log(log, pool: Pool) -> np.ndarray:
    """The labels in use, read back from the decision log (UNLABELED where none was given)."""
    from mnist_assets.ml.decisions import SOURCE_PART, fold

    position_of = {int(index): p for p, index in enumerate(pool.indices)}
    classes = pool.spec.classes()
    labels = np.full(len(pool.indices), -1, dtype=np.int64)
    for (part, index), decisions in log.by_key().items():
        if part != SOURCE_PART["train"] or index not in position_of:
            continue
        image_hash, original = pool.sources["train"][index]
        label = fold(decisions, original, image_hash)[0].label
        if label is not None:
            labels[position_of[index]] = classes.index(label)
    return labels


def train_and_score(
    pool: Pool, positions: np.ndarray, labels: np.ndarray, seed: int, scarce: bool = True, outputs: bool = True, pool_labels: bool = False
):
    """LeNet with lenet_checkpoint's recipe on the given samples: test accuracy, and with `outputs` the
    model's probabilities and penultimate features on the whole pool (for the arms that follow a model).
    With few labels and `pool_labels`, the pool's spread labels train too, as in lenet_checkpoint
    (ml/models/pseudo_labels.py)."""
    import torch

    from mnist_assets.ml.models import recipes
    from mnist_assets.ml.models.architectures import build_model
    from mnist_assets.ml.models.pseudo_labels import pool_training
    from mnist_assets.ml.models.training import evaluate, fit, predict

    train, pooled, note = as_tensors(pool.images[positions], labels, pool.mean, pool.std), False, {}
    if scarce and pool_labels:
        known = np.full(len(pool.images), -1, dtype=np.int64)
        known[positions] = labels
        whole = as_tensors(pool.images, known, pool.mean, pool.std, ids=True)
        found = pool_training(whole, len(pool.spec.classes()), seed=pool.spec.split_seed, embedding=pool.embedding)
        train, pooled, note = found.train, found.pseudo_labeled > 0, {"pseudo_labeled": found.pseudo_labeled}
    config = recipes.resolve("checkpoint", pool.spec, {"seed": 51 + seed}, scarce=scarce, pooled=pooled)
    model = build_model(config.arch, config.seed, **pool.spec.model_shape())
    fit(model, train, pool.validation, config)
    accuracy = evaluate(model, pool.test, "cpu")[1]
    if not outputs:
        return accuracy, None, None, note
    logits, features = predict(model, as_tensors(pool.images, np.zeros(len(pool.images), dtype=np.int64), pool.mean, pool.std))
    probabilities = torch.softmax(torch.as_tensor(logits), 1).numpy()
    return accuracy, probabilities, np.asarray(features), note


def run_arm(pool: Pool, arm: str, seed: int, budgets: tuple[int, ...], work: Path, progress, pool_labels: bool = False) -> Curve:
    from mnist_assets.ml.decisions import DecisionLog
    from mnist_assets.ml.quality.label_requests import choose_strategy, request_labels

    log = DecisionLog(work / f"{pool.name}-{arm}-{seed}" / "log")
    curve, probabilities, features = Curve(arm, seed), None, None
    classes = len(pool.spec.classes())
    labels = labels_from_log(log, pool)
    for budget in budgets:
        started = time.perf_counter()
        wanted = budget - int((labels >= 0).sum())
        strategy = None if arm == "default" else arm
        if arm in FOLLOW_A_MODEL and probabilities is None:
            strategy = "random"
        request = request_labels(pool.embedding, labels, wanted, probabilities, strategy, classes, seed, features=features, rank_rest=False)
        annotate(log, pool, request.batch)
        labels = labels_from_log(log, pool)
        given = np.flatnonzero(labels >= 0)
        assert len(given) == budget and (labels[given] == pool.truth[given]).all(), "the log holds exactly the answers given"
        follows = arm in FOLLOW_A_MODEL or (arm == "default" and choose_strategy(budget, classes)[0] in FOLLOW_A_MODEL)
        accuracy, probabilities, features, note = train_and_score(
            pool, given, labels[given], seed, outputs=follows, pool_labels=pool_labels
        )
        curve.points.append(
            {
                "budget": budget,
                "accuracy": round(accuracy, 4),
                "strategy": request.strategy,
                **note,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        pooled = f", {note['pseudo_labeled']} spread labels" if note else ""
        progress(f"{pool.name} {arm} seed {seed}: {budget} labels ({request.strategy}{pooled}) -> {accuracy * 100:.1f}% test")
    return curve


def daemon_round(work: Path, source: str = "mnist", labeled: int = 30, batch: int = 20, limit: int = 300, progress=print) -> dict:
    """One round as a team runs it, on `limit` samples per split with `labeled` train labels: the graph
    up to label_requests materialized, then, under the Dagster daemon, the `to-label` batch answered
    with the true labels through `record_decisions` (nothing applied by hand). The review sensor
    notices the decisions, lineage automation retrains LeNet and proposes the next batch; returns
    what changed. Must run before anything in this process imports FiftyOne (its database folder)."""
    import os

    env = round_environment(work, limit)
    os.environ.update(env)  # before FiftyOne and Dagster read it
    import dagster as dg
    from bench_label_cleaning import daemon, latest_metadata, wait_for_reruns
    from label_cleaning_location import loop_definitions

    from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN, SOURCE_INDEX, TO_LABEL_VIEW
    from mnist_assets.ml.store.fiftyone_store import split_view
    from mnist_assets.pipeline import declared_spec
    from mnist_assets.resources import Settings
    from mnist_assets.review import record_decisions
    from mnist_assets.run_all import materialize_upstream

    started = time.perf_counter()
    spec = declared_spec(source)
    spec = spec.model_copy(update={"name": f"{spec.name}_round", "label_budget": {"labeled": labeled, "seed": 0}, "label_batch": batch})
    settings, instance = Settings.from_env(), dg.DagsterInstance.get()
    defs = loop_definitions(spec, ["label_requests"], settings)
    key = lambda name: dg.AssetKey([spec.name, name])  # noqa: E731
    materialize_upstream(defs, [key("label_requests")], instance, {"settings": settings}, log=progress)
    dataset = settings.store(spec.name).dataset()

    def to_label() -> list[tuple[int, str]]:
        return list(zip(*dataset.load_saved_view(TO_LABEL_VIEW).values([SOURCE_INDEX, f"{GROUND_TRUTH_CLEAN}.label"])))

    asked = to_label()
    before = latest_metadata(instance, key("lenet_checkpoint"), None)[1]["train_samples"]
    rows = [{"split": "train", "source_index": index, "decision": "label", "label": truth} for index, truth in asked]
    reruns = [("label_review", "train"), ("lenet_checkpoint", None), ("lenet_predictions", "train"), ("label_requests", None)]
    with daemon(env, spec, ["label_requests"], work / "daemon.log"):
        since = time.time()
        record_decisions(spec.name, rows, apply=False, via=VIA, spec=spec)
        progress(f"{spec.name}: {len(rows)} labels recorded as {VIA}; waiting for the review sensor and automation")
        wait_for_reruns(instance, [(key(name), partition) for name, partition in reruns], since, 1800, work / "daemon.log")
    answered = {index for index, _ in asked}
    dataset.reload()  # the daemon's runs wrote the labels and the view in other processes
    labels_now = dict(zip(*split_view(dataset, "train").values([SOURCE_INDEX, f"{GROUND_TRUTH}.label"])))
    requests = latest_metadata(instance, key("label_requests"), None)[1]
    return {
        "dataset": spec.name,
        "asked": len(asked),
        "labels_in_use_are_the_answers": all(labels_now[index] == truth for index, truth in asked),
        "train_samples_before": before,
        "train_samples_after": latest_metadata(instance, key("lenet_checkpoint"), None)[1]["train_samples"],
        "asked_again": len(answered & {index for index, _ in to_label()}),
        "next_batch": requests["batch"],
        "last_batch_labeled": requests["last_batch_labeled"],
        "seconds": round(time.perf_counter() - started),
    }


def round_environment(work: Path, limit: int) -> dict:
    """The round's own Dagster home, data folder and database under `work` (quick_run_env: runs in
    process, the tiny CLIP, one epoch), on `limit` samples per split."""
    from processes import quick_run_env

    return {**quick_run_env(work, "activeround"), "MNIST_ASSETS_LIMIT": str(limit)}


def labels_to_reach(curves: list[Curve], target: float) -> int | None:
    """The smallest budget whose mean accuracy over seeds reaches `target`."""
    for budget, accuracy in mean_curve(curves):
        if accuracy >= target:
            return budget
    return None


def mean_curve(curves: list[Curve]) -> list[tuple[int, float]]:
    budgets = sorted({point["budget"] for curve in curves for point in curve.points})
    return [
        (budget, float(np.mean([point["accuracy"] for curve in curves for point in curve.points if point["budget"] == budget])))
        for budget in budgets
    ]


def run(
    datasets,
    arms,
    seeds: int,
    budgets,
    slow_up_to: int,
    limit,
    test_limit,
    work: Path,
    progress=print,
    pool_labels: str = "declared",
    embedding: str = "declared",
) -> dict:
    results = {}
    for name in datasets:
        started = time.perf_counter()
        pool = load_pool(name, limit, test_limit, work, embedding)
        progress(f"{name}: a pool of {len(pool.images)} train images, every label hidden ({time.perf_counter() - started:.0f} s)")
        full_accuracy, *_ = train_and_score(pool, np.arange(len(pool.images)), pool.truth, 0, scarce=False, outputs=False)
        progress(f"{name}: LeNet on all {len(pool.images)} labels -> {full_accuracy * 100:.2f}% test")
        curves = {}
        for arm in arms:
            arm_budgets = tuple(b for b in budgets if arm in ("random", "default") or b <= slow_up_to)
            spread = pool.spec.pool_labels if pool_labels == "declared" else pool_labels == "on"
            curves[arm] = [run_arm(pool, arm, seed, arm_budgets, work, progress, spread) for seed in range(seeds)]
        results[name] = {
            "pool": len(pool.images),
            "embedding": pool.spec.pool_embedding,
            "test": len(pool.test),
            "full_data_accuracy": round(full_accuracy, 4),
            "arms": {
                arm: {
                    "mean": [{"budget": b, "accuracy": round(a, 4)} for b, a in mean_curve(arm_curves)],
                    "labels_to_reach": {f"{share:.0%}": labels_to_reach(arm_curves, share * full_accuracy) for share in SHARES_OF_FULL},
                    "seeds": [curve.points for curve in arm_curves],
                }
                for arm, arm_curves in curves.items()
            },
        }
    return results


def key_ratios(results: dict) -> dict:
    """What `make bench` judges (benchmarks/run_all.py TARGETS), per dataset measured: the default's
    points over random at 100 labels, its worst margin over random at any budget, and MNIST's accuracy
    at 100 labels."""
    found = {}
    for name, result in results.items():
        if not {"default", "random"} <= set(result["arms"]):
            continue  # a run of other arms: nothing to judge the default by
        default = dict((p["budget"], p["accuracy"]) for p in result["arms"]["default"]["mean"])
        random = dict((p["budget"], p["accuracy"]) for p in result["arms"]["random"]["mean"])
        shared = sorted(set(default) & set(random))
        if 100 in shared:
            found[f"active_learning_{name}_points_over_random_at_100"] = round((default[100] - random[100]) * 100, 1)
        found[f"active_learning_{name}_worst_points_over_random"] = round(min((default[b] - random[b]) * 100 for b in shared), 1)
        if name == "mnist" and 100 in default:
            found["active_learning_mnist_accuracy_at_100"] = default[100]
    return found


def print_tables(results: dict) -> None:
    for name, result in results.items():
        arms = list(result["arms"])
        budgets = sorted({p["budget"] for arm in arms for p in result["arms"][arm]["mean"]})
        print(f"\n{name}: test accuracy (%), mean of seeds; full data {result['full_data_accuracy'] * 100:.2f}%")
        print("| labels | " + " | ".join(arms) + " |")
        print("|---|" + "---|" * len(arms))
        for budget in budgets:
            cells = []
            for arm in arms:
                found = [p["accuracy"] for p in result["arms"][arm]["mean"] if p["budget"] == budget]
                cells.append(f"{found[0] * 100:.1f}" if found else "")
            print(f"| {budget} | " + " | ".join(cells) + " |")
        print("| labels to reach " + " / ".join(f"{s:.0%}" for s in SHARES_OF_FULL) + " of full data | ", end="")
        print(" | ".join(" / ".join(str(v or "-") for v in result["arms"][arm]["labels_to_reach"].values()) for arm in arms) + " |")


def main() -> None:
    from mnist_assets.ml.core.files import atomic_write_bytes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MNIST, a 5,000-image pool, 10 to 100 labels, random and default, 1 seed")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default=None, help=f"cumulative label counts, comma-separated (default {','.join(map(str, BUDGETS))})")
    parser.add_argument("--slow-arms-up-to", type=int, default=1000, help="arms other than random and default stop here")
    parser.add_argument("--limit", type=int, default=None, help="the first N train images as the pool (default: all)")
    parser.add_argument("--test-limit", type=int, default=None, help="score on the first N validation and test images")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "active_learning.json")
    parser.add_argument("--no-daemon-round", action="store_true", help="skip the round through the review sensor and the daemon")
    parser.add_argument(
        "--pool-labels",
        choices=("declared", "on", "off"),
        default="declared",
        help="train on the pool's spread labels too (default: as declared)",
    )
    parser.add_argument(
        "--embedding",
        choices=("declared", "pixels", "hog"),
        default="declared",
        help="the pool's embedding for the arms and spread labels (default: as declared, `pool_embedding`)",
    )
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.arms, args.seeds, args.budgets = ["mnist"], ["random", "default"], 1, args.budgets or "10,20,50,100"
        args.limit, args.test_limit = args.limit or 5000, args.test_limit or 2000
        if args.out == parser.get_default("out"):
            args.out = Path(tempfile.gettempdir()) / "active_learning_quick.json"
    budgets = tuple(int(b) for b in (args.budgets or ",".join(map(str, BUDGETS))).split(","))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_active_learning_") as work:
        found = {} if args.no_daemon_round else {"daemon_round": daemon_round(Path(work) / "round")}
        if found:
            print(f"one round through the review sensor and the daemon: {found['daemon_round']}", flush=True)
        results = run(
            args.datasets,
            args.arms,
            args.seeds,
            budgets,
            args.slow_arms_up_to,
            args.limit,
            args.test_limit,
            Path(work),
            pool_labels=args.pool_labels,
            embedding=args.embedding,
        )
    results = {
        "command": " ".join(sys.argv),
        "seconds": round(time.perf_counter() - started),
        **key_ratios(results),
        **found,
        "datasets": results,
    }
    print_tables(results["datasets"])
    atomic_write_bytes(args.out, json.dumps(results, indent=1).encode())
    print(f"\nwritten to {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
