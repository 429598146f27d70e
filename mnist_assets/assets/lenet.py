"""The series' steps 4-5: train LeNet-5 on train (model selection on validation), predict every split."""

import dagster as dg
import numpy as np

from mnist_assets import checks
from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.data import checkpoint_path, load_model_for, load_models_for, split_tensors
from mnist_assets.assets.evaluation import prediction_asset
from mnist_assets.assets.retraining import kept_model_result, record_training_set, retrain_decision
from mnist_assets.assets.training import OutOfFoldConfig, TrainingConfig, fit_payload, train_checkpoint, train_config
from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml.core.field_names import (
    EVAL_FOLD_ENSEMBLE,
    EVAL_LENET,
    FOLD_ENSEMBLE_PREDICTIONS,
    LENET_EMBEDDINGS,
    LENET_OOF_PREDICTIONS,
    LENET_PREDICTIONS,
    lenet_umap_key,
)
from mnist_assets.partitions import TRAINING_SPLITS
from mnist_assets.resources import Settings


def kept_fold_models(context, p: Pipeline, settings: Settings, why: str):
    """The fold models kept: train's samples that have no out-of-fold prediction yet (new since they
    trained, so out of sample for every fold model) get the fold ensemble's."""
    from mnist_assets.ml.models.cross_validation import subset
    from mnist_assets.ml.models.training import ensemble_logits
    from mnist_assets.ml.store.fiftyone_store import write_classifications

    store = p.store(settings)
    _, view, train = split_tensors(p, settings, "train", store)
    models, _, train = load_models_for(p, store, "lenet_oof_predictions", train)
    missing = set(view.exists(LENET_OOF_PREDICTIONS, False).values("id"))
    new = subset(train, np.array([position for position, sample_id in enumerate(train.sample_ids) if sample_id in missing], dtype=np.int64))
    logits = ensemble_logits(models, new, settings.torch_device()) if len(new) else np.zeros((0, len(p.classes())), np.float32)
    if len(new):
        write_classifications(view, LENET_OOF_PREDICTIONS, logits, new.sample_ids, p.classes())
    yield kept_model_result(context, p, "lenet_oof_predictions", why, count=len(train), predicted_new=len(new))
    yield checks.check_finite(p.key("lenet_oof_predictions"), "logits", logits, (len(new), len(p.classes())))


def build(p: Pipeline) -> list:
    # The labels in use of train and validation (a person's decisions applied, excluded samples left out).
    training_data = dg.AssetDep(p.key("label_review"), partition_mapping=dg.SpecificPartitionsPartitionMapping(TRAINING_SPLITS))

    @p.asset(
        "lenet_checkpoint",
        stage="lenet",
        per_split=False,
        parents=[training_data],
        heavy=True,
        checks=[p.check("accuracy_gate", "lenet_checkpoint", blocking=True)],
        kinds={"pytorch"},
        code_version="5",
        description="LeNet-5 trained on train, keeping the state with the highest validation accuracy (atomic checkpoint).",
    )
    def lenet_checkpoint(context: dg.AssetExecutionContext, config: TrainingConfig, settings: Settings):
        yield from train_checkpoint(context, p, settings, config, "checkpoint", "lenet_checkpoint")

    @p.asset(
        "lenet_oof_predictions",
        stage="lenet",
        per_split=False,
        parents=[training_data],
        heavy=True,
        checks=[p.check("logits_finite", "lenet_oof_predictions")],
        kinds={"pytorch", "fiftyone"},
        code_version="4",
        description=(
            "Out-of-sample LeNet predictions for every training sample: K-fold cross-validation (5 folds, seeded, "
            "stratified), each fold trained plain (the dataset's epochs, no batch augmentation); train's quality "
            "scores and sample selection read them. "
            "The fold models are kept (one atomic checkpoint set) for fold_ensemble_predictions."
        ),
    )
    def lenet_oof_predictions(context: dg.AssetExecutionContext, config: OutOfFoldConfig, settings: Settings):
        from mnist_assets.ml.models.checkpoints import save_checkpoint_set
        from mnist_assets.ml.models.cross_validation import train_fold_models
        from mnist_assets.ml.store.fiftyone_store import write_classifications

        settings.configure_torch()
        train_cfg = train_config(config, p, settings, "folds")
        trains, why, training_set = retrain_decision(context, p, settings, "lenet_oof_predictions")
        if not trains:  # automation, and the policy keeps the fold models: only new samples are predicted
            yield from kept_fold_models(context, p, settings, why)
            return
        store = p.store(settings)
        _, view, train = split_tensors(p, settings, "train", store)
        _, _, validation = split_tensors(p, settings, "validation", store, statistics=(train.mean, train.std))
        fold_epochs = train_cfg.planned_epochs(len(train) * (config.folds - 1) // config.folds)  # each fold trains on the others
        context.log.info(f"{p.name}: {config.folds}-fold {train_cfg.arch} on {len(train)} training samples, {fold_epochs} epochs each")

        def log_fold(row):
            context.log.info(f"fold {row['fold']}/{config.folds}: held-out accuracy {row['held_out_accuracy']:.4f} ({row['seconds']} s)")

        result = train_fold_models(p.spec, train_cfg, train, validation, config.folds, settings.torch_device(), on_fold=log_fold)
        path = checkpoint_path(store, "lenet_oof_predictions")  # the fold models, for fold_ensemble_predictions
        shape = p.spec.model_shape()
        save_checkpoint_set(path, [fit_payload(fold_fit, train_cfg, train, **shape) for fold_fit in result.fits])
        write_classifications(view, LENET_OOF_PREDICTIONS, result.logits, train.sample_ids, p.classes())
        record_training_set(p, settings, "lenet_oof_predictions", training_set)
        yield dg.MaterializeResult(
            metadata={
                "retrained": True,
                "retrain": why,
                "count": len(train),
                "folds": config.folds,
                "accuracy": round(result.accuracy, 5),
                "misclassified": result.misclassified,
                "fold_models": dg.MetadataValue.path(str(path)),
                "per_fold": markdown_table(result.fold_rows),
                "epochs": fold_epochs,
                "batch_augmentation": train_cfg.batch_augmentation,
                "seconds": round(sum(row["seconds"] for row in result.fold_rows), 1),
            }
        )
        yield checks.check_finite(p.key("lenet_oof_predictions"), "logits", result.logits, (len(train), len(p.classes())))

    lenet_predictions = prediction_asset(
        p,
        LENET_PREDICTIONS,
        "lenet",
        "lenet_checkpoint",
        EVAL_LENET,
        "LeNet label, confidence and logits per sample, evaluated against ground truth.",
    )
    fold_ensemble_predictions = prediction_asset(
        p,
        FOLD_ENSEMBLE_PREDICTIONS,
        "lenet",
        "lenet_oof_predictions",
        EVAL_FOLD_ENSEMBLE,
        "The K fold models' ensemble (mean probability) per sample, evaluated against ground truth: out of sample on "
        "validation and test, where quality scores read it (on train each fold model saw 4 of 5 folds).",
    )

    @p.asset(
        "lenet_embeddings",
        stage="lenet",
        per_split=True,
        parents=[lenet_checkpoint, "label_review"],  # its UMAP is coloured by the labels in use
        heavy=True,
        checks=[p.check("embeddings_finite", "lenet_embeddings")],
        kinds={"pytorch", "fiftyone"},
        code_version="2",
        description=(
            "LeNet's 84-d fc1 activations per sample (only samples whose pixels or model changed), with a UMAP of them as a "
            "FiftyOne brain run, refitted only past 5% new samples, new ones placed into it until then."
        ),
    )
    def lenet_embeddings(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.figures import plots
        from mnist_assets.ml.figures.visualization import grow_umap
        from mnist_assets.ml.models.checkpoints import weights_fingerprint
        from mnist_assets.ml.models.cross_validation import subset
        from mnist_assets.ml.models.training import predict
        from mnist_assets.ml.store.fiftyone_store import read_vectors, write_vectors
        from mnist_assets.ml.store.sample_cache import plan_reuse

        settings.configure_torch()
        split = context.partition_key
        store = p.store(settings)
        dataset, view, tensors = split_tensors(p, settings, split, store, with_excluded=True)
        model, payload, tensors = load_model_for(p, store, "lenet_checkpoint", tensors)
        # Only samples whose pixels or model changed are embedded; the UMAP is refitted when due.
        reuse = plan_reuse(view, LENET_EMBEDDINGS, weights_fingerprint([model], [payload]))
        if reuse.computed:
            stale = subset(tensors, reuse.stale_positions(tensors.sample_ids))
            _, vectors = predict(model, stale, settings.torch_device())
            write_vectors(view, LENET_EMBEDDINGS, vectors, stale.sample_ids, keys=reuse.stale_keys())
        embeddings = read_vectors(view, LENET_EMBEDDINGS)
        saved = store.artifact_path("projections", f"{split}-lenet-umap.npz")
        points, placed, done = grow_umap(dataset, view, LENET_EMBEDDINGS, lenet_umap_key(split), saved, settings.numba_cache_dir)
        yield dg.MaterializeResult(
            metadata={
                "count": len(tensors),
                "computed": reuse.computed,
                "reused": reuse.reused,
                "dimensions": int(embeddings.shape[1]),
                "brain_key": lenet_umap_key(split),
                "umap_fit": done,
                "umap_placed": int(placed.sum()),
                "umap": png(plots.scatter_by_label(points, tensors.labels.numpy(), f"LeNet fc1 UMAP, {split}", marked=placed)),
            }
        )
        yield checks.check_finite(p.key("lenet_embeddings"), "embeddings", embeddings, (len(tensors), 84))

    return [lenet_checkpoint, lenet_oof_predictions, lenet_predictions, fold_ensemble_predictions, lenet_embeddings]
