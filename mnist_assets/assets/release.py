"""The release: the model a dataset ships, chosen on validation, exported to ONNX, parity-checked."""

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

from mnist_assets.assets.common import Pipeline, materialize_first, parent_data_version, parent_metadata
from mnist_assets.assets.data import checkpoint_path, load_models_for, split_tensors
from mnist_assets.metadata import markdown_table
from mnist_assets.ml.core.field_names import EVAL_RELEASE, GROUND_TRUTH_ORIGINAL, RELEASE_PREDICTIONS, SOURCE_INDEX, eval_key
from mnist_assets.ml.data.dataset_spec import SPLITS
from mnist_assets.ml.decisions import KINDS
from mnist_assets.resources import Settings

if TYPE_CHECKING:  # for annotations only: imported where used, at run time
    from mnist_assets.ml.release import export as release

CODE_VERSION = "3"  # 2: champion and challenger, versioned release folders, the conversion in the metadata; 3: the CNN
CANDIDATES = {  # candidate -> (the asset whose checkpoint file holds it, what it is)
    "lenet_checkpoint": ("lenet_checkpoint", "LeNet-5, the checkpoint"),
    "finetuned_model": ("finetuned_model", "LeNet-5 fine-tuned on train and the augmented set"),
    "fold_ensemble": ("lenet_oof_predictions", "the 5 fold models of the cross-validation, their probabilities averaged"),
    "cnn_checkpoint": ("cnn_checkpoint", "the VGG-style CNN with batch norm, trained for the release"),
}
EVALUATED = dg.SpecificPartitionsPartitionMapping(["validation", "test"])
# Candidates that also see the mirror image where the classes allow it: the CNN trained on mirror
# images (docs/recipes.md: +0.22 and +0.01 points on Fashion-MNIST test in two runs); the LeNets keep the series' model.
MIRRORED = {"cnn_checkpoint"}


def candidates_for(p: Pipeline, store, pixels) -> "list[release.Candidate]":
    """Every classifier the graph trained, as a uint8 -> probabilities module with its standardization."""
    from mnist_assets.ml.models.architectures import parameter_count
    from mnist_assets.ml.release import export as release

    found = []
    for name, (asset, description) in CANDIDATES.items():
        with materialize_first(p, asset):
            models, payloads, standardized = load_models_for(p, store, asset, pixels)
        seconds = [payload["settings"].get("training_seconds") for payload in payloads]
        found.append(
            release.Candidate(
                name,
                release.Probabilities(models, standardized.mean, standardized.std, mirror=name in MIRRORED and p.spec.flips),
                description,
                parameters=sum(parameter_count(model) for model in models),
                training_seconds=round(sum(seconds), 1) if None not in seconds else None,
            )
        )
    return found


def candidate_costs(p: Pipeline, settings: Settings) -> list[dict]:
    """Every release candidate's accuracy (labels in use), parameters, training seconds, ONNX size and
    images per second through onnxruntime on the test split (ml/release/export.costs), for model_comparison."""
    from mnist_assets.ml.release import export as release

    store = p.store(settings)
    _, _, validation = split_tensors(p, settings, "validation", store, standardize=False)
    _, _, test = split_tensors(p, settings, "test", store, standardize=False)
    rows = []
    for candidate in candidates_for(p, store, test):
        release.score(candidate, (validation.images, validation.labels.numpy()), (test.images, test.labels.numpy()), p.classes())
        rows.append(release.costs(candidate, test.images.numpy(), p.spec.channels, p.spec.image_size))
    return rows


def build(p: Pipeline) -> list:
    @p.asset(
        "model_release",
        stage="release",
        per_split=False,
        parents=[
            "lenet_checkpoint",
            "finetuned_model",
            "lenet_oof_predictions",
            "cnn_checkpoint",
            dg.AssetDep(p.key("label_review"), partition_mapping=EVALUATED),
        ],
        checks=[
            p.check(
                "not_worse_than_champion",
                "model_release",
                blocking=False,
                description=(
                    "The new best model is not worse on validation than the release in place, re-scored on the same labels; "
                    "when it is, the release in place stays (a warning: retraining made things worse)."
                ),
            ),
            p.check(
                "onnx_parity",
                "model_release",
                blocking=True,
                description="onnxruntime on the whole test split (excluded samples too): the model's class for every sample, "
                "probabilities within 1e-5.",
            ),
        ],
        kinds={"pytorch", "onnx"},
        code_version=CODE_VERSION,
        description=(
            "The model to ship: of the LeNet checkpoint, the fine-tuned LeNet, the fold ensemble and the CNN, the best on "
            "validation (the "
            "challenger), exported to ONNX (uint8 images in, class probabilities out, standardization inside) with its model "
            "card; it replaces the release in place (the champion, re-scored on the labels in use) only when parity passes and "
            "it is not worse on validation; the release in use and the newest keep_releases (default 5) are kept. "
            "release_predictions on every split, from the release in place."
        ),
    )
    def model_release(context: dg.AssetExecutionContext, settings: Settings):
        settings.configure_torch()
        store = p.store(settings)
        attempt = challenge(context, p, settings, store)
        kept, pruned = publish(context, p, settings, store, attempt)
        yield dg.MaterializeResult(metadata=release_metadata(p, attempt, store.dir / "release", kept, pruned))
        yield from release_checks(p, attempt)

    return [model_release]


def recipe_of(store, winner: "release.Candidate") -> dict:
    """The training settings the released model's checkpoint recorded (an ensemble's first member's)."""
    from mnist_assets.ml.models.checkpoints import load_models

    _, payload = load_models(checkpoint_path(store, CANDIDATES[winner.name][0]))[0]
    return {key: value for key, value in payload["settings"].items() if isinstance(value, (str, int, float, bool))}


def label_error_figures(test, winner: "release.Candidate", classes: list[str], known: list[int]) -> dict | None:
    """How many of the dataset's confirmed test label errors the released model ranks in the top 20 /
    50 / 100 by its probability of the source's label, on every test sample (the published terms)."""
    from mnist_assets.ml.data.tensors import class_positions
    from mnist_assets.ml.release import export as release
    from mnist_assets.ml.release.comparison import rank_label_errors

    if not known:
        return None
    dataset, view, tensors = test
    source = class_positions(view.values(f"{GROUND_TRUTH_ORIGINAL}.label"), classes)
    logits = np.log(np.clip(release.probabilities(winner.model, tensors.images), 1e-12, 1.0))
    (row,) = rank_label_errors(view.values(SOURCE_INDEX), source, {winner.name: logits}, known, pair=("", ""))
    return {f"in_{top}": found for top, found in row.items() if top != "ranking"}


def review_counts(context, p: Pipeline) -> dict:
    """The review log's decisions in force per split, as label_review last recorded them."""
    found = {}
    for split in SPLITS:
        recorded = parent_metadata(context, p.key("label_review"), split, missing={})
        found[split] = {kind: recorded.get(f"decisions_{kind}", 0) for kind in KINDS}
    return found


def limitations(p: Pipeline, settings: Settings, candidates) -> list[str]:
    conversion = p.spec.conversion()
    notes = [
        f"Trained and judged on {p.name} ({p.spec.source}) at {p.spec.image_size}x{p.spec.image_size}, "
        f"{'gray' if p.spec.channels == 1 else 'RGB'}: other images are converted as ingest converted these "
        + (
            f"(resized to {p.spec.image_size}x{p.spec.image_size}, squashing other aspect ratios)."
            if conversion.resize == "bilinear"
            else f"(resized to the source's {conversion.source_size} pixels square, centred on its background)."
        ),
        "Accuracies are against the labels in use after human review; samples a person excluded are left out.",
        "CLIP zero-shot is not a candidate: it would need real CLIP weights and a much larger graph.",
    ]
    if settings.limit or settings.epochs:
        notes.append("A limited run (MNIST_ASSETS_LIMIT or MNIST_ASSETS_EPOCHS): the figures say little about the full dataset.")
    return notes


def write_release_predictions(p: Pipeline, settings: Settings, store, dataset, model_file) -> None:
    """The released ONNX model's predictions on every sample of every split (`release_predictions`,
    logits = log probabilities), evaluated against the labels in use as `eval_release_<split>`."""
    from mnist_assets.ml.release import export as release
    from mnist_assets.ml.store.fiftyone_store import evaluate, usable_view, write_classifications

    for split in SPLITS:
        _, view, pixels = split_tensors(p, settings, split, store, standardize=False, with_excluded=True)
        probabilities = release.onnx_probabilities(model_file, pixels.images.numpy())
        write_classifications(view, RELEASE_PREDICTIONS, np.log(np.clip(probabilities, 1e-12, 1.0)), pixels.sample_ids, p.classes())
        evaluate(dataset, usable_view(dataset, split), RELEASE_PREDICTIONS, eval_key(EVAL_RELEASE, split), p.classes())


@dataclass
class Attempt:
    """One model_release run: the candidates scored, the challenger, its export and its duel with the
    release in place, and what follows (`promoted`, `decision`)."""

    candidates: list
    winner: "release.Candidate"
    reason: str
    contest: "release.Duel"
    graph: bytes
    parity: "release.Parity"
    versions: dict
    test_with_excluded: tuple
    model_sha256: str
    version: str
    weights_sha256: str

    @property
    def unchanged(self) -> bool:
        """The release in place is this very network and weights (the data may have grown since: a
        model the retrain policy kept is not released again)."""
        same_weights = self.contest.champion_weights_sha256 is not None and self.contest.champion_weights_sha256 == self.weights_sha256
        return same_weights or self.contest.champion_sha256 == self.model_sha256

    @property
    def promoted(self) -> bool:
        return self.parity.passed and self.contest.challenger_wins and not self.unchanged

    @property
    def decision(self) -> str:
        if not self.parity.passed:
            return f"{self.winner.name} failed ONNX parity; the release in place stays"
        if self.unchanged:
            return f"the release in place, {self.contest.champion}, is this very model: kept"
        return self.contest.summary()


def challenge(context, p: Pipeline, settings: Settings, store) -> Attempt:
    """Score every candidate, choose the challenger on validation, export it to ONNX, check parity on
    every test image and duel it with the release in place on the labels in use."""
    import hashlib

    from mnist_assets.ml.release import export as release
    from mnist_assets.ml.release import folder as release_folder

    _, _, validation = split_tensors(p, settings, "validation", store, standardize=False)
    _, _, test = split_tensors(p, settings, "test", store, standardize=False)
    candidates = candidates_for(p, store, test)
    for candidate in candidates:
        release.score(candidate, (validation.images, validation.labels.numpy()), (test.images, test.labels.numpy()), p.classes())
    winner, reason = release.choose(candidates)
    context.log.info(f"{p.name}: challenger {reason}")
    contest = release.duel(winner, release_folder.current(store.dir / "release"), validation.images.numpy(), validation.labels.numpy())
    versions = {split: parent_data_version(context, p.key("label_review"), split) for split in SPLITS}
    properties = {
        "dataset": p.name,
        "model": winner.name,
        "classes": json.dumps(p.classes()),
        **p.spec.conversion().metadata(),
        "data_version": json.dumps(versions),
        "code_version": CODE_VERSION,
    }
    graph = release.export_onnx(winner.model, p.spec.channels, p.spec.image_size, properties)
    # Parity on every test image, those a person excluded too: they are images a user may send.
    everything = split_tensors(p, settings, "test", store, standardize=False, with_excluded=True)
    every_test = everything[2]
    exported = release.onnx_probabilities(graph, every_test.images.numpy())
    parity = release.parity(release.probabilities(winner.model, every_test.images), exported, every_test.labels.numpy())
    model_sha256 = hashlib.sha256(graph).hexdigest()
    return Attempt(
        candidates,
        winner,
        reason,
        contest,
        graph,
        parity,
        versions,
        everything,
        model_sha256,
        release_folder.new_version(model_sha256),
        release.weights_sha256(graph),
    )


def publish(context, p: Pipeline, settings: Settings, store, attempt: Attempt) -> tuple[list, dict]:
    """Promote the challenger when it won (its model card written, old releases pruned), and write the
    predictions of the release in place on every split. Returns the releases kept and what pruning did."""
    from mnist_assets.ml.release import export as release
    from mnist_assets.ml.release import folder as release_folder

    folder, pruned = store.dir / "release", {"removed": [], "failed": []}
    if attempt.promoted:
        card, markdown = release.model_card(
            dataset=p.name,
            data_version=attempt.versions,
            code_version=CODE_VERSION,
            winner=attempt.winner,
            reason=attempt.reason,
            candidates=attempt.candidates,
            classes=p.classes(),
            image_size=p.spec.image_size,
            channels=p.spec.channels,
            recipe=recipe_of(store, attempt.winner),
            parity_result=attempt.parity,
            version=attempt.version,
            model_sha256=attempt.model_sha256,
            weights_sha256=attempt.weights_sha256,
            conversion=p.spec.conversion().metadata(),
            contest=attempt.contest,
            label_errors=label_error_figures(attempt.test_with_excluded, attempt.winner, p.classes(), p.spec.known_label_errors),
            review=review_counts(context, p),
            limitations=limitations(p, settings, attempt.candidates),
        )
        release_folder.promote(folder, attempt.version, attempt.graph, card, markdown)
        context.log.info(f"{p.name}: released {attempt.version}: {attempt.decision}")
        pruned = release_folder.prune(folder, p.spec.keep_releases)  # after the switch: the new release is in place
        for failure in pruned["failed"]:
            context.log.warning(f"{p.name}: old release {failure}; it stays, and removing it is tried again at the next release")
    else:
        log = context.log.error if not attempt.parity.passed else context.log.info if attempt.unchanged else context.log.warning
        log(f"{p.name}: {attempt.decision}")
    in_place = release_folder.current(folder)
    if in_place is not None:
        write_release_predictions(p, settings, store, attempt.test_with_excluded[0], in_place / "model.onnx")
    return release_folder.list_releases(folder), pruned


def release_metadata(p: Pipeline, attempt: Attempt, folder, kept: list, pruned: dict) -> dict:
    from mnist_assets.ml.release import folder as release_folder

    in_place, contest, winner, parity = release_folder.current(folder), attempt.contest, attempt.winner, attempt.parity
    return {
        "released": (attempt.version if attempt.promoted else (in_place.name if in_place else "(none)")),
        "released_model": winner.name if attempt.promoted else (contest.champion_model or "(none)"),
        "promoted": attempt.promoted,
        "challenger": winner.name,
        "reason": attempt.reason,
        "decision": attempt.decision,
        "champion_validation_accuracy": contest.champion_accuracy if contest.champion_accuracy is not None else "none",
        "margin_points": round(contest.margin * 100, 4) if contest.margin is not None else "none",
        "candidates": markdown_table(
            [{"model": c.name, "validation_accuracy": c.validation_accuracy, "test_accuracy": c.test_accuracy} for c in attempt.candidates]
        ),
        "releases": markdown_table(kept) if in_place else "none",
        "releases_kept": len(kept),
        "releases_removed": len(pruned["removed"]),
        "validation_accuracy": winner.validation_accuracy,
        "test_accuracy": winner.test_accuracy,
        "onnx_test_accuracy": parity.onnx_accuracy,
        "onnx_max_abs_difference": parity.max_abs_difference,
        "onnx_bytes": len(attempt.graph),
        "conversion": json.dumps(p.spec.conversion().metadata()),
        "model_file": dg.MetadataValue.path(str(folder / "model.onnx")),
        "model_card": dg.MetadataValue.path(str(folder / "model_card.md")),
    }


def release_checks(p: Pipeline, attempt: Attempt):
    """The duel with the release in place (a warning when the challenger lost) and ONNX parity."""
    contest, parity = attempt.contest, attempt.parity
    yield dg.AssetCheckResult(
        asset_key=p.key("model_release"),
        check_name="not_worse_than_champion",
        passed=contest.challenger_wins,
        severity=dg.AssetCheckSeverity.WARN,
        description=contest.summary(),
        metadata={k: v for k, v in contest.as_dict().items() if v is not None and k != "summary"},
    )
    yield dg.AssetCheckResult(
        asset_key=p.key("model_release"),
        check_name="onnx_parity",
        passed=parity.passed,
        metadata={
            "samples": parity.samples,
            "argmax_agree": parity.argmax_agree,
            "max_abs_difference": parity.max_abs_difference,
            "onnx_accuracy": parity.onnx_accuracy,
            "model_accuracy": parity.model_accuracy,
        },
    )
