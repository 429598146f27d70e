"""Does fixing pay? The data-quality loop run by a simulated reviewer through the platform's own path,
on declared label noise where the truth (`ground_truth_clean`) is known.

Per scenario (a noisy declaration of MNIST or Fashion-MNIST: ml/data/label_noise.py), in fresh folders:
1. materialize the loop's assets: the ingest, the labels in use, the out-of-fold LeNets
   (`lenet_oof_predictions`, whose logits give `review_priority`) and the fold ensemble's test predictions;
2. rounds: the reviewer takes the top of the review order among the train samples no one decided on
   and answers with the true label (`relabel` where the label is wrong, `confirm` where it is right)
   through `record_decisions` (`via: simulated-reviewer`); the lineage retrains (the first
   `--daemon-rounds` rounds under the Dagster daemon: the review sensor notices the decisions,
   lineage automation re-runs `label_review[train]`, the fold models, their predictions and the
   review scores; the other rounds materialize the same assets in this process) and the next round
   reviews the top of the order re-ranked on the new models;
3. beside it, with the same recipe and budget: fold models trained on the clean labels (the ceiling),
   on a random review of the same size, and on the noisy labels less what cleanlab's
   `prune_by_noise_rate` flags (automatic cleaning, no review).
Measured: wrong labels found against reviews spent (the loop's order, the first ranking alone, random
order), and the accuracy on the clean test split of the fold ensemble (one of model_release's
candidates, the one Fashion-MNIST releases) after each arm. Writes the results as JSON and a plot
per scenario.

    .venv/bin/python benchmarks/bench_label_cleaning.py                # the five scenarios of docs/label-cleaning.md
    .venv/bin/python benchmarks/bench_label_cleaning.py --quick        # MNIST, 40% noise (sparsity 0.6), 2,000 per split, one daemon round
    .venv/bin/python benchmarks/bench_label_cleaning.py --scenario mnist:0.2:0.6 --rounds 4 --budget 0.25 --folds 5 --epochs 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))  # processes.py: the services' helpers the tests use

FULL_SCENARIOS = ("fashion_mnist:0.2:0.0", "fashion_mnist:0.2:0.6", "mnist:0.2:0.0", "mnist:0.2:0.6", "fashion_mnist:0.4:0.0")
FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.25, 0.30)
LOOP = ["lenet_oof_predictions", "fold_ensemble_predictions"]  # what a round retrains and reads
QUEUE = ["hardness_scores"]  # the platform's own review order (review_priority), rescored under the daemon too
# Noise on train only unless a scenario names its splits (source:rate:sparsity:train+validation): with
# validation noisy too the reviewer works through the saved view `review-queue` as a person would,
# validation's queue first, then the top of train's order (docs/label-cleaning.md).
NOISY_SPLITS = ("train",)
RUNNING = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
TIMEOUT = 3 * 3600


@dataclass(frozen=True)
class Plan:
    rounds: int = 4
    budget: float = 0.25  # of the train split, spread evenly over the rounds
    daemon_rounds: int = 0
    limit: int | None = None
    # Every arm trains a set of fold models and a scenario about 7 sets (the clean arm is shared by
    # a source's scenarios): 3 folds of 4 epochs instead of the asset's 5 of 10 make the five
    # scenarios fit in about an hour on 2 cores (`--folds 5 --epochs 10`: the shipped recipe).
    epochs: int | None = 4
    folds: int = 3
    seed: int = 0
    # The accuracy of a random review and of cleanlab's pruning: a set of fold models each.
    comparisons: bool = True


# The daemon's runs take the asset's default folds (automation passes no config), so the quick run keeps 5.
# Its noise is on train and validation, as real noise is: the round reviews validation's queue first.
# It measures the loop against random order and the clean labels, and leaves the two comparison
# models (about 40 s of the suite) to the full run.
QUICK = (
    ["mnist:0.4:0.6:train+validation"],
    Plan(rounds=1, budget=0.2, daemon_rounds=1, limit=2000, epochs=6, folds=5, comparisons=False),
)


def environment(work: Path, plan: Plan) -> dict:
    """This process's and the daemon's environment: their own Dagster home, data folder and database
    under `work`, the tiny CLIP (no CLIP asset runs here), runs in process."""
    from processes import quick_run_env

    env = quick_run_env(work, "labelclean")
    for name, value in (("MNIST_ASSETS_LIMIT", plan.limit), ("MNIST_ASSETS_EPOCHS", plan.epochs)):
        env.pop(name, None)
        if value:
            env[name] = str(value)
    return env


def latest_metadata(instance, key, partition: str | None) -> tuple[float, dict]:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records:
        return 0.0, {}
    materialization = records[0].asset_materialization
    return records[0].timestamp, {name: value.value for name, value in materialization.metadata.items()}


class Loop:
    """One scenario's dataset, instance and the reviewer's state."""

    def __init__(self, spec, settings, instance, plan: Plan, env: dict, work: Path):
        import dagster as dg
        import numpy as np
        from label_cleaning_location import loop_definitions

        self.spec, self.settings, self.instance, self.plan, self.env, self.work = spec, settings, instance, plan, env, work
        self.noisy_validation = "validation" in spec.label_noise.get("splits", ("train", "validation"))
        self.targets = LOOP + (QUEUE if plan.daemon_rounds or self.noisy_validation else [])
        self.defs = loop_definitions(spec, self.targets, settings)
        self.resources = {"settings": settings}
        self.key = lambda name: dg.AssetKey([spec.name, name])
        self.configs = {self.key("lenet_oof_predictions"): {"folds": plan.folds}}
        self.order: list[int] = []  # positions of train in the order reviewed
        self.reviewed = None
        self.np = np

    def log(self, message: str) -> None:
        print(f"[{self.spec.name}] {message}", flush=True)

    def materialize_loop(self) -> None:
        from mnist_assets.run_all import materialize_upstream

        targets = [self.key(name) for name in self.targets]
        materialize_upstream(self.defs, targets, self.instance, self.resources, log=self.log, configs=self.configs)

    def train_split(self) -> dict:
        """train's samples in one order: source keys, labels in use and truth (class positions), out-of-fold logits."""
        from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN, LENET_OOF_PREDICTIONS, SOURCE_INDEX
        from mnist_assets.ml.data.tensors import class_positions
        from mnist_assets.ml.store.fiftyone_store import read_vectors, usable_view

        view = usable_view(self.settings.store(self.spec.name).dataset(), "train")
        source_index, given, truth = view.values([SOURCE_INDEX, f"{GROUND_TRUTH}.label", f"{GROUND_TRUTH_CLEAN}.label"])
        classes = self.spec.classes()
        return {
            "ids": view.values("id"),
            "source_index": source_index,
            "given": class_positions(given, classes),
            "truth": class_positions(truth, classes),
            "logits": read_vectors(view, f"{LENET_OOF_PREDICTIONS}.logits"),
            "view": view,
        }

    def test_accuracy(self) -> float:
        return float(latest_metadata(self.instance, self.key("fold_ensemble_predictions"), "test")[1]["accuracy"])

    def review(self, priority, train: dict, count: int) -> dict:
        """The reviewer's round: where validation is noisy, validation's part of the saved view
        `review-queue` first (the platform's order, as a person opens it); then the top `count` of
        train not yet reviewed; each answered with the truth and recorded in one import."""
        from mnist_assets.ml.quality.label_cleaning import REVIEWER, next_to_review, reviewer_rows
        from mnist_assets.review import record_decisions

        first = self.validation_queue_rows() if self.noisy_validation else []
        positions = next_to_review(priority, self.reviewed, count)
        rows = reviewer_rows(positions, train["source_index"], train["given"], train["truth"], self.spec.classes(), "train")
        record_decisions(self.spec.name, first + rows, apply=False, via=REVIEWER, spec=self.spec)
        self.reviewed[positions] = True
        self.order.extend(int(p) for p in positions)
        relabelled = lambda found: sum(row["decision"] == "relabel" for row in found)  # noqa: E731
        return {
            "reviewed": len(positions),
            "relabelled": relabelled(rows),
            "validation_reviewed": len(first),
            "validation_relabelled": relabelled(first),
        }

    def wrong_labels(self, split: str) -> int:
        """How many labels in use of the split differ from the truth."""
        from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN
        from mnist_assets.ml.store.fiftyone_store import usable_view

        given, truth = usable_view(self.settings.store(self.spec.name).dataset(), split).values(
            [f"{GROUND_TRUTH}.label", f"{GROUND_TRUTH_CLEAN}.label"]
        )
        return sum(a != b for a, b in zip(given, truth))

    def validation_queue_rows(self) -> list[dict]:
        """The reviewer's answers to validation's samples in `review-queue`, in its order."""
        import numpy as np
        from fiftyone import ViewField as F

        from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN, REVIEW_QUEUE_VIEW, SOURCE_INDEX, SPLIT
        from mnist_assets.ml.data.tensors import class_positions
        from mnist_assets.ml.quality.label_cleaning import reviewer_rows

        queue = self.settings.store(self.spec.name).dataset().load_saved_view(REVIEW_QUEUE_VIEW).match(F(SPLIT) == "validation")
        source_index, given, truth = queue.values([SOURCE_INDEX, f"{GROUND_TRUTH}.label", f"{GROUND_TRUTH_CLEAN}.label"])
        classes = self.spec.classes()
        positions = np.arange(len(source_index))
        return reviewer_rows(
            positions, source_index, class_positions(given, classes), class_positions(truth, classes), classes, "validation"
        )

    def reruns(self, queue: bool) -> list[tuple[str, str | None]]:
        """What the lineage re-runs after a round's decisions, in lineage order: the labels in use of
        each reviewed split, the fold models, the test predictions; `queue`: the review scores too."""
        splits = ("validation", "train") if self.noisy_validation else ("train",)
        found = [*(("label_review", split) for split in splits), ("lenet_oof_predictions", None), ("fold_ensemble_predictions", "test")]
        if queue:
            found += [("fold_ensemble_predictions", "validation")] if self.noisy_validation else []  # validation's scores read them
            found += [(name, split) for name in QUEUE for split in splits]
        return found

    def retrain_in_process(self) -> None:
        """What the lineage re-runs after the round's decisions, materialized here in lineage order (the
        review scores where the next round reads validation's queue)."""
        from mnist_assets.run_all import materialize_stage

        for name, partition in self.reruns(queue=self.noisy_validation):
            result = materialize_stage(self.instance, [self.key(name)], partition, self.resources, self.defs.assets, self.configs)
            if not result.success:
                raise RuntimeError(f"{name}[{partition}] failed")

    def retrain_through_daemon(self, since: float) -> None:
        """Wait for the daemon's review sensor and lineage automation to re-run the loop after `since`."""
        expected = [(self.key(name), partition) for name, partition in self.reruns(queue=True)]
        wait_for_reruns(self.instance, expected, since, TIMEOUT, self.work / "daemon.log", quiet_seconds=10)

    def runs_by_daemon(self, since: float) -> list[str]:
        import dagster as dg

        runs = self.instance.get_runs(dg.RunsFilter(created_after=_utc(since)))
        return sorted(f"{run.tags.get('mnist_assets/launched_by') or run.tags.get('dagster/sensor_name') or 'automation'}" for run in runs)


def wait_for_reruns(instance, expected: list, since: float, timeout: float, log_path: Path, quiet_seconds: float = 0) -> None:
    """Until every (asset key, partition) in `expected` has materialized after `since` and no run has
    been queued or running for `quiet_seconds`; a failed run since, or the timeout, raises naming the log."""
    import dagster as dg

    deadline, quiet_since = time.time() + timeout, None
    while time.time() < deadline:
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=_utc(since)))
        if failed:
            raise RuntimeError(f"a run the daemon launched failed: {failed[0].run_id} ({failed[0].job_name}); see {log_path}")
        fresh = all(latest_metadata(instance, key, partition)[0] >= since for key, partition in expected)
        busy = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus[s] for s in RUNNING]))
        quiet_since = (quiet_since or time.time()) if fresh and not busy else None
        if quiet_since and time.time() - quiet_since >= quiet_seconds:
            return
        time.sleep(2)
    raise TimeoutError(f"the daemon did not re-run {len(expected)} assets within {timeout:.0f} s; see {log_path}")


def _utc(stamp: float):
    import datetime

    return datetime.datetime.fromtimestamp(stamp, datetime.UTC)


@contextlib.contextmanager
def daemon(env: dict, spec, targets: list[str], log_path: Path):
    """`dagster-daemon run` on the loop's code location until the block ends."""
    from processes import stop

    location = {"spec": spec.model_dump(), "targets": targets}
    command = [str(REPO / ".venv" / "bin" / "dagster-daemon"), "run", "-f", str(REPO / "benchmarks" / "label_cleaning_location.py")]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, "LABEL_CLEANING_LOCATION": json.dumps(location), "PYTHONPATH": str(REPO / "benchmarks")},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


def arm_accuracy(loop: Loop, labels=None, keep=None) -> tuple[float, float]:
    """Test accuracy of fold models trained as lenet_oof_predictions trains them, on train with
    `labels` (class positions; default the labels in use) and only the samples `keep`; and seconds."""
    import numpy as np

    from mnist_assets.assets.common import Pipeline
    from mnist_assets.assets.data import split_tensors
    from mnist_assets.assets.training import OutOfFoldConfig, train_config
    from mnist_assets.ml.data.tensors import SplitTensors
    from mnist_assets.ml.models.cross_validation import fold_ensemble, subset, train_fold_models
    from mnist_assets.ml.models.training import ensemble_logits

    started = time.perf_counter()
    p, settings = Pipeline(loop.spec), loop.settings
    config = OutOfFoldConfig(folds=loop.plan.folds)
    train_cfg = train_config(config, p, settings, "folds")
    _, _, train = split_tensors(p, settings, "train")
    if train.sample_ids != loop.train_split()["ids"]:
        raise RuntimeError("train's tensors and its view list the samples in different orders")
    _, _, validation = split_tensors(p, settings, "validation", statistics=(train.mean, train.std))
    _, _, test = split_tensors(p, settings, "test", statistics=(train.mean, train.std))
    if labels is not None:
        import torch

        train = SplitTensors(
            train.images, torch.as_tensor(np.asarray(labels), dtype=train.labels.dtype), train.sample_ids, train.mean, train.std
        )
    if keep is not None:
        train = subset(train, np.flatnonzero(keep))
    result = train_fold_models(loop.spec, train_cfg, train, validation, config.folds, settings.torch_device())
    logits = ensemble_logits(fold_ensemble(loop.spec, train_cfg, result), test)
    return float((logits.argmax(axis=1) == test.labels.numpy()).mean()), time.perf_counter() - started


def run_scenario(name: str, plan: Plan, env: dict, work: Path, clean_cache: dict) -> dict:
    """One scenario: its own noisy dataset in the run's instance and database."""
    import dagster as dg
    import numpy as np
    from scipy.special import softmax

    from mnist_assets.ml.data.label_noise import noisy_declaration
    from mnist_assets.ml.quality.label_cleaning import prune_by_noise_rate, random_review, review_curve, reviewed_labels
    from mnist_assets.ml.quality.review_order import ranking_metrics, review_priority
    from mnist_assets.pipeline import declared_spec
    from mnist_assets.resources import Settings

    source, rate, sparsity, *splits = name.split(":")
    noisy = tuple(splits[0].split("+")) if splits else NOISY_SPLITS
    spec = noisy_declaration(declared_spec(source), float(rate), float(sparsity), plan.seed, splits=noisy)
    if noisy != NOISY_SPLITS:  # its own dataset beside the train-only scenario of the same rate
        spec = spec.model_copy(update={"name": f"{spec.name}_{'_'.join(noisy)}"})
    started = time.perf_counter()
    loop = Loop(spec, Settings.from_env(), dg.DagsterInstance.get(), plan, env, work)
    loop.log(f"materializing the loop ({', '.join(loop.targets)}) on {plan.limit or 'all'} samples per split")
    loop.materialize_loop()

    train = loop.train_split()
    size = len(train["given"])
    wrong = train["given"] != train["truth"]
    loop.reviewed = np.zeros(size, dtype=bool)
    probabilities = softmax(train["logits"].astype(np.float64), axis=1)
    first = review_priority(train["logits"], train["given"])
    accuracy = {"noisy": loop.test_accuracy()}
    result = {
        "scenario": name,
        "dataset": spec.name,
        "label_noise": spec.label_noise,
        "plan": asdict(plan),
        "train_samples": size,
        "wrong": int(wrong.sum()),
        "validation_wrong": loop.wrong_labels("validation"),
        "one_shot": ranking_metrics(first, wrong, FRACTIONS),
    }
    loop.log(
        f"{int(wrong.sum())} of {size} train labels wrong; first ranking's average precision {result['one_shot']['average_precision']:.3f}"
    )

    # The comparisons, on the labels as ingested (before any round changes the labels in use).
    per_round = int(round(plan.budget * size / plan.rounds))
    budget = per_round * plan.rounds
    randomly = random_review(size, budget, plan.seed)
    if plan.comparisons:
        accuracy["random_review"], seconds = arm_accuracy(loop, reviewed_labels(train["given"], train["truth"], randomly))
        loop.log(f"random review of {budget}: test accuracy {accuracy['random_review']:.4f} ({seconds:.0f} s)")
        flagged = prune_by_noise_rate(train["given"], probabilities)
        accuracy["auto_pruned"], seconds = arm_accuracy(loop, keep=~flagged)
        result["auto_pruned"] = {"flagged": int(flagged.sum()), "precision": float(wrong[flagged].mean()) if flagged.any() else 0.0}
        loop.log(f"cleanlab pruned {int(flagged.sum())}: test accuracy {accuracy['auto_pruned']:.4f} ({seconds:.0f} s)")
    clean_key = (source, plan.limit, plan.epochs, plan.folds)
    if clean_key not in clean_cache:  # the clean labels are the same at every rate and sparsity of a source
        clean_cache[clean_key] = arm_accuracy(loop, train["truth"])[0]
    accuracy["clean"] = clean_cache[clean_key]
    loop.log(f"clean labels: test accuracy {accuracy['clean']:.4f}")

    rounds, priority = [], first
    for number in range(1, plan.rounds + 1):
        round_started = time.time()
        through_daemon = number <= plan.daemon_rounds
        with daemon(env, spec, loop.targets, work / "daemon.log") if through_daemon else contextlib.nullcontext():
            row = loop.review(priority, train, per_round)
            if through_daemon:
                loop.retrain_through_daemon(round_started)
            else:
                loop.retrain_in_process()
        train = loop.train_split()
        priority = review_priority(train["logits"], train["given"])
        found = int(wrong[loop.order].sum())
        row.update(
            round=number,
            path="review sensor and lineage automation under the daemon" if through_daemon else "the same assets, materialized in process",
            found_so_far=found,
            recall_so_far=found / max(int(wrong.sum()), 1),
            still_wrong=int((train["given"] != train["truth"]).sum()),
            validation_still_wrong=loop.wrong_labels("validation"),
            test_accuracy=loop.test_accuracy(),
            seconds=round(time.time() - round_started),
        )
        if through_daemon:
            row["runs"] = loop.runs_by_daemon(round_started)
            stored = np.array(train["view"].values("review_priority"), dtype=np.float64)
            row["queue_is_review_priority"] = bool(np.allclose(stored, priority, atol=1e-6))  # the platform re-ranked the same way
        rounds.append(row)
        accuracy[f"round_{number}"] = row["test_accuracy"]
        loop.log(
            f"round {number}: {row['relabelled']} of {row['reviewed']} relabelled, recall {row['recall_so_far']:.3f}, "
            f"test accuracy {row['test_accuracy']:.4f} ({row['seconds']} s)"
        )

    result.update(
        rounds=rounds,
        budget=budget,
        loop=review_curve(np.array(loop.order), wrong, FRACTIONS),
        random=review_curve(randomly, wrong, FRACTIONS),
        accuracy=accuracy,
        seconds=round(time.perf_counter() - started),
    )
    result["loop_recall_over_random"] = result["loop"][f"recall_at_{plan.budget:.0%}"] / max(
        result["random"][f"recall_at_{plan.budget:.0%}"], 1e-9
    )
    result["points_below_clean"] = round(100 * (accuracy["clean"] - accuracy[f"round_{plan.rounds}"]), 2)
    return result


def plot(result: dict, folder: Path) -> Path:
    """The scenario's review curves and accuracies as `<folder>/<dataset>.png`."""
    from mnist_assets.ml.figures import plots

    def points(metrics):
        shares = [f for f in FRACTIONS if f"recall_at_{f:.0%}" in metrics]
        return [0.0, *shares], [0.0, *(metrics[f"recall_at_{f:.0%}"] for f in shares)]

    curves = {"the loop, re-ranked each round": points(result["loop"]), "first ranking alone": points(result["one_shot"])}
    curves["random order"] = points(result["random"])
    accuracy = result["accuracy"]
    names = {"clean": "clean labels", "noisy": "noisy labels", "random_review": "random review", "auto_pruned": "auto-pruned (cleanlab)"}
    shown = {names.get(key, key.replace("_", " ")): value for key, value in accuracy.items()}
    noise = result["label_noise"]
    title = f"{result['dataset']}: {noise['rate']:.0%} of train wrong, sparsity {noise['sparsity']}, {result['budget']} reviews"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result['dataset']}.png"
    path.write_bytes(plots.review_curves(curves, shown, title))
    return path


def print_tables(results: list[dict]) -> None:
    """The two tables of docs/label-cleaning.md: wrong labels found, and accuracy on the clean test split."""
    found = ["scenario", "wrong / train", "precision, first 5%", "recall at 5%", "10%", "20%", "budget", "first ranking alone"]
    found += ["random order", "average precision, first ranking"]
    print("\n| " + " | ".join(found) + " |\n|" + "---|" * len(found))
    for r in results:
        loop, budget = r["loop"], f"{r['plan']['budget']:.0%}"
        recall = " | ".join(f"{loop.get(f'recall_at_{f}', float('nan')):.3f}" for f in ("5%", "10%", "20%", budget))
        print(
            f"| {r['scenario']} | {r['wrong']} / {r['train_samples']} | {loop['precision_at_5%']:.3f} | {recall} | "
            f"{r['one_shot'][f'recall_at_{budget}']:.3f} | {r['random'][f'recall_at_{budget}']:.3f} | "
            f"{r['one_shot']['average_precision']:.3f} |"
        )
    rounds = max(r["plan"]["rounds"] for r in results)
    accuracy = ["scenario", "clean labels", "noisy labels", *(f"round {n}" for n in range(1, rounds + 1)), "random review", "auto-pruned"]
    print("\n| " + " | ".join(accuracy) + " |\n|" + "---|" * len(accuracy))
    for r in results:
        a = r["accuracy"]
        cells = [
            a["clean"],
            a["noisy"],
            *(a.get(f"round_{n}", float("nan")) for n in range(1, rounds + 1)),
            a.get("random_review", float("nan")),
            a.get("auto_pruned", float("nan")),
        ]
        print(f"| {r['scenario']} | " + " | ".join(f"{100 * value:.2f}" for value in cells) + " |")


def key_ratios(results: list[dict]) -> dict:
    """The figures `make bench` lists: the worst scenario's."""
    return {
        "label_cleaning_recall_over_random": round(min(r["loop_recall_over_random"] for r in results), 2),
        "label_cleaning_points_below_clean": max(r["points_below_clean"] for r in results),
        "label_cleaning_seconds": sum(r["seconds"] for r in results),
    }


def run(work: Path, scenarios, plan: Plan, out: Path | None = None, plots: Path | None = None) -> dict:
    """Every scenario in turn, in fresh folders under `work` (one Dagster instance and database, a
    dataset per scenario), each written to `out` as soon as it is done."""
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = environment(work, plan)
    os.environ.update(env)  # before FiftyOne and Dagster read it
    for name in [n for n in os.environ if n.startswith(("MNIST_ASSETS_", "FIFTYONE_DATABASE")) and n not in env]:
        del os.environ[name]
    results, clean_cache = [], {}
    for name in scenarios:
        result = run_scenario(name, plan, env, work, clean_cache)
        result["plot"] = str(plot(result, plots or work / "plots"))
        results.append(result)
        if out:
            out.write_text(json.dumps({"results": results, **key_ratios(results)}, indent=2) + "\n")
    print_tables(results)
    return {"results": results, **key_ratios(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="MNIST, 40%% noise at sparsity 0.6, 2,000 samples per split, 6 epochs: one round, through the daemon",
    )
    parser.add_argument("--scenario", action="append", help="source:rate:sparsity (repeatable; default the five of docs/label-cleaning.md)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--budget", type=float, help="share of train reviewed over all rounds")
    parser.add_argument("--daemon-rounds", type=int)
    parser.add_argument("--limit", type=int, help="samples per split")
    parser.add_argument("--epochs", type=int, help="every model's epochs (default 4; 0: the declaration's)")
    parser.add_argument("--folds", type=int, help="fold models per set (default 3; the asset's 5 with --daemon-rounds)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default .mnist_assets/bench/label_cleaning)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "label_cleaning.json")
    parser.add_argument("--plots", type=Path, help="folder for the plots (default: the work folder's plots/)")
    parser.add_argument("--tables", type=Path, help="only print the tables of a results file (and draw its plots into --plots)")
    args = parser.parse_args()
    if args.tables:
        results = json.loads(args.tables.read_text())["results"]
        print_tables(results)
        for result in results if args.plots else []:
            plot(result, args.plots)
        return
    scenarios, plan = QUICK if args.quick else (list(FULL_SCENARIOS), Plan())
    chosen = {k: v for k, v in vars(args).items() if k in Plan.__dataclass_fields__ and v is not None}
    plan = Plan(**{**asdict(plan), **chosen})
    from mnist_assets.assets.training import OutOfFoldConfig
    from mnist_assets.ml.core.environment import assets_home

    shipped = OutOfFoldConfig().folds
    if plan.daemon_rounds and plan.folds != shipped:
        parser.error(f"--daemon-rounds: the daemon's runs train the asset's {shipped} folds, add --folds {shipped}")

    work = (args.work or assets_home() / "bench" / "label_cleaning").resolve()
    run(work, args.scenario or scenarios, plan, args.out, args.plots)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
