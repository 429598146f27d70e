"""The series' step 7 and its exercises: targeted augmentation, fine-tuning, and the comparison of models."""

import dagster as dg
import numpy as np
from pydantic import Field

from mnist_assets.assets.common import Pipeline, materialize_first
from mnist_assets.assets.data import load_model_for, split_tensors
from mnist_assets.assets.evaluation import prediction_asset
from mnist_assets.assets.release import candidate_costs
from mnist_assets.assets.retraining import kept_model_result, retrain_decision
from mnist_assets.assets.training import RecipeConfig, kept_accuracy_gate, training_results
from mnist_assets.metadata import class_counts, markdown_table, png
from mnist_assets.ml.core.field_names import (
    EVAL_FINETUNED,
    FINETUNED_PREDICTIONS,
    FOLD_ENSEMBLE_PREDICTIONS,
    GROUND_TRUTH,
    GROUND_TRUTH_ORIGINAL,
    LENET_PREDICTIONS,
    MODEL_FIELDS,
    SOURCE_INDEX,
)
from mnist_assets.ml.decisions import accuracy_side_by_side
from mnist_assets.partitions import TRAINING_SPLITS
from mnist_assets.resources import Settings

AUGMENTED_SPLIT = "augmented"
TRAIN_ONLY = dg.SpecificPartitionsPartitionMapping(["train"])
TEST_ONLY = dg.SpecificPartitionsPartitionMapping(["test"])
TRAINING_ONLY = dg.SpecificPartitionsPartitionMapping(TRAINING_SPLITS)


class AugmentationConfig(dg.Config):
    """Which training samples to augment, how many, and how many copies of each."""

    # On the out-of-sample scores, 5 seeds (scripts/strategy_study.py, docs/recipes.md): hardest 99.37%, the
    # series' misclassified 99.28% (its 512 include mislabeled digits, copied 10 times each).
    strategy: str = "hardest"  # misclassified, hardest, most_unique, least_confident, active
    budget: int = Field(512, ge=1)
    copies: int = Field(10, ge=1)
    seed: int = Field(51, ge=0, lt=2**32)


class FinetuneConfig(RecipeConfig):
    """Fine-tuning's settings: each field left empty takes the fine-tuning recipe's (ml/models/recipes.py:
    15 epochs from the LeNet checkpoint, one-cycle to 1e-3, a random affine on every training batch,
    the last state kept). The architecture is always the checkpoint's.

    The series' own setting (recipe "series", lr 1e-4, batch_augmentation "none", keep "best")
    changes nothing measurable on a 99.2% LeNet: as many test samples break as get fixed. With
    one-cycle, the last epochs' validation losses differ by less than their noise, so "best" can
    pick an earlier, still-hot state.
    """


def recipe_settings(config: RecipeConfig) -> dict:
    """The training settings a person set in the Launchpad (None: the recipe's), without the gate's threshold."""
    from mnist_assets.ml.models.training import TrainConfig

    return {name: value for name, value in config.model_dump().items() if name in TrainConfig.__dataclass_fields__}


def build(p: Pipeline) -> list:
    classes = p.classes()

    @p.asset(
        "augmented_set",
        stage="augmentation",
        per_split=False,
        parents=[
            dg.AssetDep(p.key("hardness_scores"), partition_mapping=TRAIN_ONLY),
            "lenet_oof_predictions",  # "misclassified" means out of sample
            dg.AssetDep(p.key("label_review"), partition_mapping=TRAIN_ONLY),  # the copies take the labels in use
        ],
        checks=[p.check("sample_count", "augmented_set")],
        kinds={"pytorch", "fiftyone"},
        code_version="5",
        description="Augmented copies of training samples chosen by a strategy, as PNGs and linked FiftyOne samples.",
    )
    def augmented_set(context: dg.AssetExecutionContext, config: AugmentationConfig, settings: Settings):
        from mnist_assets.ml.data.tensors import channels_last
        from mnist_assets.ml.figures import plots
        from mnist_assets.ml.models.augmentation import augment_chosen, check_copies_settings
        from mnist_assets.ml.models.selection import read_scores
        from mnist_assets.ml.store.fiftyone_store import replace_split, write_pngs

        check_copies_settings(config.strategy, config.budget, config.copies)  # refused before any work
        store = p.store(settings)
        _, view, train = split_tensors(p, settings, "train", store, standardize=False)
        with materialize_first(p, "hardness_scores", "train"):
            scores = read_scores(view)
        correct = scores["correct"]
        made = augment_chosen(train.images, scores, config.strategy, config.budget, config.copies, config.seed, p.spec.flips)
        chosen, images, source_positions = made.chosen, made.images, made.sources
        context.log.info(f"{config.strategy}: chose {len(chosen)} of {len(train)} training samples ({(~correct).sum()} misclassified)")
        source_index = np.asarray(view.values(SOURCE_INDEX))[source_positions]
        # The folder is named by what determines the pixels, so existing files are never stale.
        folder = store.artifact_path("augmented", f"{config.strategy}-{made.key}")
        copy_number = made.copy_number
        paths = [folder / f"{int(i):05d}-{int(k)}.png" for i, k in zip(source_index, copy_number)]
        write_pngs(channels_last(images), paths)
        labels = train.labels.numpy()[source_positions]
        dataset = store.augmented()
        links = {
            "source_sample_id": [train.sample_ids[i] for i in source_positions],
            "copy": [int(k) for k in copy_number],
            "strategy": [config.strategy] * len(paths),
        }
        count = replace_split(dataset, AUGMENTED_SPLIT, paths, labels, source_index, extra_fields=links, classes=classes)
        dataset.info["augmented_set"] = {"strategy": config.strategy, "budget": config.budget, "copies": config.copies, "seed": config.seed}
        dataset.save()

        shown = list(range(min(10, len(chosen))))
        before = train.images[chosen[shown]].numpy()
        after = images[[i * config.copies for i in shown]].numpy()
        yield dg.MaterializeResult(
            metadata={
                "count": count,
                "strategy": config.strategy,
                "selected": len(chosen),
                "misclassified_in_train": int((~correct).sum()),
                "dataset": dataset.name,
                "class_counts": markdown_table([class_counts(labels, classes)]),
                "before_after": png(
                    plots.image_grid(
                        np.concatenate([before, after]),
                        [f"src {classes[labels[i * config.copies]]}" for i in shown] + ["augmented"] * len(shown),
                    )
                ),
            }
        )
        yield dg.AssetCheckResult(
            asset_key=p.key("augmented_set"),
            check_name="sample_count",
            passed=count == len(chosen) * config.copies,
            metadata={"count": count, "expected": len(chosen) * config.copies},
        )

    @p.asset(
        "finetuned_model",
        stage="augmentation",
        per_split=False,
        parents=["lenet_checkpoint", augmented_set, dg.AssetDep(p.key("label_review"), partition_mapping=TRAINING_ONLY)],
        heavy=True,
        checks=[p.check("accuracy_gate", "finetuned_model", blocking=True)],
        kinds={"pytorch"},
        code_version="4",
        description="LeNet fine-tuned on train plus the augmented set (atomic checkpoint); finetuned_predictions uses it.",
    )
    def finetuned_model(context: dg.AssetExecutionContext, config: FinetuneConfig, settings: Settings):
        from mnist_assets.ml.data.tensors import load_view_tensors
        from mnist_assets.ml.models.finetuning import finetune
        from mnist_assets.ml.store.fiftyone_store import split_view

        settings.configure_torch()
        trains, why, training_set = retrain_decision(context, p, settings, "finetuned_model", base="lenet_checkpoint")
        if not trains:  # automation, and the policy keeps the model
            yield kept_model_result(context, p, "finetuned_model", why)
            yield kept_accuracy_gate(context, p, settings, "finetuned_model", config)
            return
        store = p.store(settings)
        _, _, train = split_tensors(p, settings, "train", store)
        _, _, validation = split_tensors(p, settings, "validation", store, statistics=(train.mean, train.std))
        model, payload, _ = load_model_for(p, store, "lenet_checkpoint", train)
        augmented = load_view_tensors(
            split_view(store.augmented(), AUGMENTED_SPLIT),
            store.tensor_cache_dir,
            classes=classes,
            channels=p.spec.channels,
            size=p.spec.image_size,
        )
        tuned = finetune(
            p.spec,
            model,
            payload,
            train,
            augmented,
            validation,
            recipe_settings(config),
            env_epochs=settings.epochs,
            device=settings.torch_device(),
            log=context.log.info,
        )
        yield from training_results(
            context,
            p,
            settings,
            "finetuned_model",
            tuned.result,
            tuned.config,
            config,
            tuned.train,
            retrain=(why, training_set),
            augmented_count=len(augmented),
        )

    finetuned_predictions = prediction_asset(
        p,
        FINETUNED_PREDICTIONS,
        "augmentation",
        "finetuned_model",
        EVAL_FINETUNED,
        "The fine-tuned model's label, confidence and logits per sample, evaluated against ground truth.",
    )

    # CLIP zero-shot is compared when present but is not a dependency: without CLIP weights the
    # comparison of the two LeNets still runs (docs/decisions.md).
    @p.asset(
        "model_comparison",
        stage="augmentation",
        per_split=False,
        parents=[
            dg.AssetDep(p.key("lenet_predictions"), partition_mapping=TEST_ONLY),
            dg.AssetDep(finetuned_predictions, partition_mapping=TEST_ONLY),
            dg.AssetDep(p.key("fold_ensemble_predictions"), partition_mapping=TEST_ONLY),
            dg.AssetDep(p.key("label_review"), partition_mapping=dg.SpecificPartitionsPartitionMapping(["validation", "test"])),
            "cnn_checkpoint",
        ],
        checks=[p.check("models_compared", "model_comparison")],
        kinds={"fiftyone", "onnx"},
        code_version="7",  # 7: the release candidates, with their costs
        description=(
            "Test-split accuracy (labels in use, and source labels beside it) and per-class recall of every model, "
            "what fine-tuning fixed and broke, and every release candidate's accuracy, parameters, training seconds, "
            "ONNX size and images per second through onnxruntime on this machine."
        ),
    )
    def model_comparison(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.data.tensors import class_positions
        from mnist_assets.ml.figures import plots
        from mnist_assets.ml.release.comparison import PAIR_ENSEMBLE, compare_models, rank_label_errors
        from mnist_assets.ml.store.fiftyone_store import read_vectors, split_view, usable_view

        dataset = p.store(settings).dataset()
        everything = split_view(dataset, "test")
        view = usable_view(dataset, "test")  # the labels in use; excluded samples left out
        schema = dataset.get_field_schema()
        present = [field for field in MODEL_FIELDS if field in schema and None not in view.values(f"{field}.label")]
        for field in set(MODEL_FIELDS) - set(present):
            context.log.warning(f"{field} missing on test samples; {MODEL_FIELDS[field]} left out of the comparison")
        truth, *predicted = view.values([f"{GROUND_TRUTH}.label", *(f"{field}.label" for field in present)])
        comparison = compare_models(
            truth, {MODEL_FIELDS[f]: values for f, values in zip(present, predicted)}, classes, "LeNet", "fine-tuned LeNet"
        )
        side_by_side = accuracy_side_by_side(everything)
        metadata = {
            "table": markdown_table(comparison.rows),
            "evaluated": len(truth),
            "excluded": len(everything) - len(truth),
            "accuracy_by_labels": markdown_table(side_by_side),
            **{f"accuracy_{metadata_name(row['model'])}": row["accuracy"] for row in comparison.rows},
            **{f"accuracy_source_labels_{metadata_name(row['model'])}": row["accuracy_source_labels"] for row in side_by_side},
        }
        if comparison.fixed is not None:
            metadata.update(fixed=comparison.fixed, broken=comparison.broken)
        known = p.spec.known_label_errors
        if known and {LENET_PREDICTIONS, FINETUNED_PREDICTIONS} <= set(present):
            # Against the source's labels on every sample: the published findings' terms.
            labels = class_positions(everything.values(f"{GROUND_TRUTH_ORIGINAL}.label"), classes)
            ranked = [f for f in (LENET_PREDICTIONS, FINETUNED_PREDICTIONS, FOLD_ENSEMBLE_PREDICTIONS) if f in present]
            logits = {MODEL_FIELDS[f]: read_vectors(everything, f"{f}.logits") for f in ranked}
            rows = rank_label_errors(everything.values(SOURCE_INDEX), labels, logits, known, ("LeNet", "fine-tuned LeNet"))
            ensemble = next(row for row in rows if row["ranking"] == PAIR_ENSEMBLE)
            metadata["label_error_rankings"] = markdown_table(rows)
            metadata.update({f"ensemble_confirmed_label_errors_in_{top}": found for top, found in ensemble.items() if top != "ranking"})
        candidates = candidate_costs(p, settings)
        metadata["release_candidates"] = markdown_table(candidates)
        for row in candidates:
            metadata[f"test_accuracy_{row['model']}"] = row["test_accuracy"]
            metadata[f"onnx_images_per_second_{row['model']}"] = row["onnx_images_per_second"]
            metadata[f"multiply_adds_{row['model']}"] = row["multiply_adds"]
        if comparison.recalls:
            metadata["recall_plot"] = png(plots.grouped_bars(classes, comparison.recalls, "per-class recall, test", "recall"))
        yield dg.MaterializeResult(metadata=metadata)
        compared = [row["model"] for row in comparison.rows]
        yield dg.AssetCheckResult(
            asset_key=p.key("model_comparison"),
            check_name="models_compared",
            passed={"LeNet", "fine-tuned LeNet"} <= set(compared),
            metadata={"models": ", ".join(compared)},
        )

    return [augmented_set, finetuned_model, finetuned_predictions, model_comparison]


def metadata_name(model: str) -> str:
    """A model's name as a metadata key: "fine-tuned LeNet" -> fine_tuned_lenet."""
    return model.replace(" ", "_").replace("-", "_").lower()
