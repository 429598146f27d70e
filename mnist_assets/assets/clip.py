"""The series' steps 2-3: CLIP embeddings, their UMAP and PCA projections, and zero-shot predictions."""

import io
from typing import Optional

import dagster as dg
import numpy as np
from pydantic import Field

from mnist_assets import checks
from mnist_assets.assets.common import Pipeline, materialize_first, parent_metadata
from mnist_assets.assets.data import split_tensors
from mnist_assets.assets.evaluation import evaluation_metadata
from mnist_assets.metadata import png
from mnist_assets.ml.core.field_names import (
    CLIP_EMBEDDINGS,
    CLIP_ZERO_SHOT,
    EVAL_CLIP,
    GROUND_TRUTH,
    clip_projection_keys,
)
from mnist_assets.ml.core.files import atomic_write_bytes
from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.resources import Settings


class ClipEmbeddingConfig(dg.Config):
    """Batching and the optional digit-aware preprocessing."""

    batch_size: int = Field(256, ge=1)
    invert: bool = False  # dark object on a light ground
    pad: int = Field(0, ge=0)  # margin in pixels around the image


class ZeroShotConfig(dg.Config):
    """Prompt templates and class names: the dataset's own, a named set (MNIST), or your own list."""

    template_set: str = "dataset"  # the dataset's templates; MNIST also "series", "official", "ensemble"
    templates: Optional[list[str]] = None  # overrides template_set; each needs one "{}"
    class_names: str = "dataset"  # the dataset's CLIP class names; MNIST also "series" ("0 - zero", ...)


def clip_info(context, p: Pipeline, split: str) -> dict:
    """What clip_embeddings recorded for a split (model, weights, preprocessing), read from its metadata."""
    with materialize_first(p, "clip_embeddings", split):
        return parent_metadata(context, p.key("clip_embeddings"), split)


def weights_metadata(info: dict) -> dict:
    return {"model": info["model"], "weights": info["weights"]}


def resolve_prompts(spec: DatasetSpec, config: ZeroShotConfig) -> tuple[list[str], list[str]]:
    """The templates and class names a config asks for, refused with the choices when unknown."""
    from mnist_assets.ml.models.zero_shot import CLASS_NAME_SETS, OBJECT_TEMPLATES, TEMPLATE_SETS, validate_templates

    digits = spec.source == "mnist"
    default_templates = spec.clip_templates or (TEMPLATE_SETS["ensemble"] if digits else OBJECT_TEMPLATES)
    template_sets = {"dataset": default_templates, **(TEMPLATE_SETS if digits else {})}
    name_sets = {"dataset": spec.clip_class_names or spec.classes(), **(CLASS_NAME_SETS if digits else {})}
    if config.templates is None and config.template_set not in template_sets:
        raise ValueError(f"unknown template_set {config.template_set!r} for {spec.name}; choose one of {sorted(template_sets)}")
    if config.class_names not in name_sets:
        raise ValueError(f"unknown class_names {config.class_names!r} for {spec.name}; choose one of {sorted(name_sets)}")
    templates = validate_templates(config.templates if config.templates is not None else template_sets[config.template_set])
    return templates, name_sets[config.class_names]


def embed_stale(p: Pipeline, settings: Settings, split: str, view, reuse, clip, config: ClipEmbeddingConfig, log) -> float:
    """Embed the samples `reuse` marks stale, store each vector with its key; the images per second."""
    from mnist_assets.ml.models.clip_models import embed_images
    from mnist_assets.ml.store.fiftyone_store import write_vectors

    _, _, tensors = split_tensors(p, settings, split, standardize=False, with_excluded=True)
    images = tensors.images[reuse.stale_positions(tensors.sample_ids)]

    def log_progress(done, total):
        if done == total or done % (config.batch_size * 20) == 0:
            log.info(f"{p.name}/clip_embeddings[{split}]: {done}/{total} images")

    device = settings.torch_device()
    vectors, images_per_second = embed_images(
        clip, images, config.batch_size, device, config.invert, config.pad, on_progress=log_progress, precision=settings.clip_precision
    )
    write_vectors(view, CLIP_EMBEDDINGS, vectors, reuse.stale_ids(), keys=reuse.stale_keys())
    return images_per_second


def build(p: Pipeline) -> list:
    classes = p.classes()

    @p.asset(
        "clip_embeddings",
        stage="clip",
        per_split=True,
        parents=["raw_dataset"],
        heavy=True,
        checks=[p.check("embeddings_finite", "clip_embeddings")],
        kinds={"pytorch", "fiftyone"},
        code_version="3",
        description=(
            "L2-normalized open_clip image embeddings per sample, in FiftyOne and as an array file; only samples whose "
            "pixels, model or preprocessing changed are embedded again (metadata: computed, reused)."
        ),
    )
    def clip_embeddings(context: dg.AssetExecutionContext, config: ClipEmbeddingConfig, settings: Settings):
        from mnist_assets.ml.models.clip_models import autocast_dtype, load_clip, validate_clip_settings, weights_identity
        from mnist_assets.ml.store.fiftyone_store import read_vectors, split_view
        from mnist_assets.ml.store.sample_cache import plan_reuse, settings_fingerprint

        split = context.partition_key
        validate_clip_settings(settings.clip_model, settings.clip_pretrained)
        settings.configure_torch()
        device = settings.torch_device()
        clip = load_clip(settings.clip_model, settings.clip_pretrained, device)  # fails here, first, without weights
        if clip.weights == "random":
            context.log.warning(
                f"CLIP {clip.name} has RANDOM weights (MNIST_ASSETS_CLIP_PRETRAINED=none): embeddings and zero-shot "
                "predictions are meaningless, for tests and smoke runs only."
            )
        precision = "bf16" if autocast_dtype(settings.clip_precision, device) else "fp32"
        store = p.store(settings)
        view = split_view(store.dataset(), split)
        # Only samples whose pixels, model, weights or preprocessing changed are embedded again.
        fingerprint = settings_fingerprint(
            model=clip.name, weights=weights_identity(settings.clip_pretrained), invert=config.invert, pad=config.pad, precision=precision
        )
        reuse = plan_reuse(view, CLIP_EMBEDDINGS, fingerprint)
        context.log.info(f"{p.name}/clip_embeddings[{split}]: {reuse.computed} to embed, {reuse.reused} kept from earlier runs")
        images_per_second = embed_stale(p, settings, split, view, reuse, clip, config, context.log) if reuse.computed else None
        embeddings = read_vectors(view, CLIP_EMBEDDINGS)  # the split's, kept and new, in view order
        array_path = store.artifact_path("clip", f"{split}-{clip.name}-{clip.weights}.npy")
        buffer = io.BytesIO()
        np.save(buffer, embeddings)
        atomic_write_bytes(array_path, buffer.getvalue())
        info = {"model": clip.name, "weights": clip.weights, "invert": config.invert, "pad": config.pad}
        yield dg.MaterializeResult(
            metadata={
                "count": len(embeddings),
                "computed": reuse.computed,
                "reused": reuse.reused,
                "fingerprint": fingerprint,
                "shape": str(embeddings.shape),
                **info,  # what umap_projection and zero_shot_predictions read back
                "preprocessing": f"invert={config.invert}, pad={config.pad}",
                **({"images_per_second": round(images_per_second, 1)} if images_per_second else {}),
                "device": device,
                "precision": precision,
                "array_file": dg.MetadataValue.path(str(array_path)),
            }
        )
        yield checks.check_finite(p.key("clip_embeddings"), "embeddings", embeddings, (len(view), None))

    @p.asset(
        "umap_projection",
        stage="clip",
        per_split=True,
        parents=[clip_embeddings, "label_review"],  # the plots colour each point by its label in use
        heavy=True,
        checks=[p.check("brain_runs_present", "umap_projection")],
        kinds={"fiftyone", "umap"},
        code_version="3",
        description=(
            "UMAP and PCA of the CLIP embeddings as FiftyOne brain runs (the App's embeddings panel), plotted by label in use; "
            "the UMAP is fitted again only past 5% new samples, new ones placed into it until then (marked in the plot)."
        ),
    )
    def umap_projection(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.data.tensors import class_positions
        from mnist_assets.ml.figures import plots
        from mnist_assets.ml.figures.visualization import compute_projection, grow_umap
        from mnist_assets.ml.store.fiftyone_store import split_view

        split = context.partition_key
        store = p.store(settings)
        dataset = store.dataset()
        view = split_view(dataset, split)
        info = clip_info(context, p, split)
        labels = class_positions(view.values(f"{GROUND_TRUTH}.label"), classes)
        keys = clip_projection_keys(split)
        plots_md = {}
        for method, key in keys.items():
            placed = None
            if method == "umap":  # refitted when due, new samples placed into it until then
                saved = store.artifact_path("projections", f"{split}-umap.npz")
                points, placed, done = grow_umap(dataset, view, CLIP_EMBEDDINGS, key, saved, settings.numba_cache_dir)
                plots_md.update(umap_fit=done, umap_placed=int(placed.sum()))
            else:  # PCA: one SVD, fitted every time
                points = compute_projection(dataset, view, CLIP_EMBEDDINGS, key, method=method, numba_cache_dir=settings.numba_cache_dir)
            context.log.info(f"{method} of {len(view)} CLIP embeddings ({split}) as brain run {key}")
            plots_md[f"{method}_plot"] = png(plots.scatter_by_label(points, labels, f"CLIP {method.upper()}, {split}", marked=placed))
        yield dg.MaterializeResult(
            metadata={"count": len(view), "brain_keys": ", ".join(keys.values()), **weights_metadata(info), **plots_md}
        )
        present = set(dataset.list_brain_runs())
        yield dg.AssetCheckResult(
            asset_key=p.key("umap_projection"),
            check_name="brain_runs_present",
            passed=set(keys.values()) <= present,
            metadata={"expected": str(sorted(keys.values())), "present": str(sorted(present))},
        )

    @p.asset(
        "zero_shot_predictions",
        stage="clip",
        per_split=True,
        parents=[clip_embeddings, "label_review"],
        checks=[p.check("logits_finite", "zero_shot_predictions")],
        kinds={"pytorch", "fiftyone"},
        code_version="3",
        description="CLIP zero-shot label, confidence and logits per sample from a prompt-template ensemble.",
    )
    def zero_shot_predictions(context: dg.AssetExecutionContext, config: ZeroShotConfig, settings: Settings):
        from mnist_assets.ml.models.clip_models import load_clip
        from mnist_assets.ml.models.zero_shot import text_classifier, zero_shot_logits
        from mnist_assets.ml.store.fiftyone_store import read_vectors, split_view, write_classifications
        from mnist_assets.ml.store.sample_cache import plan_reuse, settings_fingerprint

        split = context.partition_key
        templates, class_names = resolve_prompts(p.spec, config)  # refused before any work
        store = p.store(settings)
        dataset = store.dataset()
        view = split_view(dataset, split)
        info = clip_info(context, p, split)
        device = settings.torch_device()
        clip = load_clip(info["model"], settings.clip_pretrained, device)
        if clip.weights != info["weights"]:
            raise ValueError(
                f"clip_embeddings[{split}] used weights {info['weights']!r} but the settings now give {clip.weights!r}; "
                f"re-materialize {p.name}/clip_embeddings first."
            )
        # Only samples whose embedding, prompts or class names changed are predicted again.
        fingerprint = settings_fingerprint(embeddings=info.get("fingerprint"), templates=templates, class_names=class_names)
        reuse = plan_reuse(view, CLIP_ZERO_SHOT, fingerprint)
        logits = np.zeros((0, len(classes)), np.float32)
        if reuse.computed:
            classifier = text_classifier(clip, class_names, templates, device)
            with materialize_first(p, "clip_embeddings", split):
                embeddings = read_vectors(view.select(reuse.stale_ids(), ordered=True), CLIP_EMBEDDINGS)
            logits = zero_shot_logits(clip, embeddings, classifier)
            write_classifications(view, CLIP_ZERO_SHOT, logits, reuse.stale_ids(), classes, keys=reuse.stale_keys())
        metadata = evaluation_metadata(dataset, split, CLIP_ZERO_SHOT, EVAL_CLIP, classes)
        context.log.info(
            f"{p.name}/clip_zero_shot[{split}]: accuracy {metadata['accuracy']:.4f} ({len(templates)} templates; "
            f"{reuse.computed} predicted, {reuse.reused} kept)"
        )
        yield dg.MaterializeResult(
            metadata={
                "count": len(view),
                "computed": reuse.computed,
                "reused": reuse.reused,
                **weights_metadata(info),
                "templates": "\n".join(templates),
                "class_names": ", ".join(class_names),
                "preprocessing": f"invert={info['invert']}, pad={info['pad']}",
                **metadata,
            }
        )
        yield checks.check_finite(p.key("zero_shot_predictions"), "logits", logits, (reuse.computed, len(classes)))

    return [clip_embeddings, umap_projection, zero_shot_predictions]
