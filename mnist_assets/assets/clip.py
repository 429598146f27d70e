"""The series' steps 2-3: CLIP embeddings, their UMAP and PCA projections, and zero-shot predictions."""

import io
import json
from typing import Optional

import numpy as np

import dagster as dg
from mnist_assets import checks
from mnist_assets.assets.common import HEAVY_POOL, prediction_metadata, split_tensors
from mnist_assets.assets.dataset import raw_mnist
from mnist_assets.automation import follows_lineage
from mnist_assets.metadata import png
from mnist_assets.ml import plots
from mnist_assets.ml.clip_models import embed_images, load_clip, validate_clip_settings
from mnist_assets.ml.fiftyone_store import evaluate, read_vectors, split_view, write_classifications, write_vectors
from mnist_assets.ml.files import atomic_write_bytes
from mnist_assets.ml.visualization import compute_projection
from mnist_assets.ml.zero_shot import CLASS_NAME_SETS, TEMPLATE_SETS, text_classifier, validate_templates, zero_shot_logits
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings


class ClipEmbeddingConfig(dg.Config):
    """Batching and the optional digit-aware preprocessing."""

    batch_size: int = 256
    invert: bool = False  # dark digit on a light ground
    pad: int = 0  # margin in pixels around the 28x28 digit


def clip_info_path(settings: MnistSettings, split: str):
    # A file per split, not the dataset's shared `info` document, which concurrent splits would overwrite.
    return settings.artifact_path("clip", f"{split}.json")


def clip_info(settings: MnistSettings, split: str) -> dict:
    """What clip_embeddings recorded for a split (model, weights, preprocessing)."""
    path = clip_info_path(settings, split)
    if not path.is_file():
        raise ValueError(f"no CLIP embeddings recorded for {split!r}; materialize clip_embeddings[{split}] first.")
    return json.loads(path.read_text())


def weights_metadata(info: dict) -> dict:
    return {"model": info["model"], "weights": info["weights"]}


@dg.asset(
    partitions_def=split_partitions,
    deps=[raw_mnist],
    group_name="clip",
    kinds={"pytorch", "fiftyone"},
    pool=HEAVY_POOL,
    code_version="2",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("embeddings_finite", asset="clip_embeddings")],
)
def clip_embeddings(context: dg.AssetExecutionContext, config: ClipEmbeddingConfig, settings: MnistSettings):
    """L2-normalized open_clip image embeddings per sample, in FiftyOne and as an array file."""
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
    dataset, view, tensors = split_tensors(settings, split)

    def log_progress(done, total):
        if done == total or done % (config.batch_size * 20) == 0:
            context.log.info(f"clip_embeddings[{split}]: {done}/{total} images")

    embeddings, images_per_second = embed_images(
        clip, tensors.images, config.batch_size, device, config.invert, config.pad, on_progress=log_progress
    )
    write_vectors(view, "clip_embeddings", embeddings, tensors.sample_ids)
    array_path = settings.artifact_path("clip", f"{split}-{clip.name}-{clip.weights}.npy")
    buffer = io.BytesIO()
    np.save(buffer, embeddings)
    atomic_write_bytes(array_path, buffer.getvalue())
    info = {"model": clip.name, "weights": clip.weights, "invert": config.invert, "pad": config.pad}
    atomic_write_bytes(clip_info_path(settings, split), json.dumps(info).encode())
    yield dg.MaterializeResult(
        metadata={
            "count": len(embeddings),
            "shape": str(embeddings.shape),
            **weights_metadata(info),
            "preprocessing": f"invert={config.invert}, pad={config.pad}",
            "images_per_second": round(images_per_second, 1),
            "device": device,
            "array_file": dg.MetadataValue.path(str(array_path)),
        }
    )
    yield checks.check_finite("clip_embeddings", "embeddings", embeddings, (len(tensors), None))


@dg.asset(
    partitions_def=split_partitions,
    deps=[clip_embeddings],
    group_name="clip",
    kinds={"fiftyone", "umap"},
    pool=HEAVY_POOL,
    code_version="1",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("brain_runs_present", asset="umap_projection")],
)
def umap_projection(context: dg.AssetExecutionContext, settings: MnistSettings):
    """UMAP and PCA of the CLIP embeddings as FiftyOne brain runs (the App's embeddings panel)."""
    split = context.partition_key
    dataset = settings.dataset()
    view = split_view(dataset, split)
    info = clip_info(settings, split)
    labels = np.array([int(label) for label in view.values("ground_truth.label")])
    keys = {"umap": f"clip_umap_{split}", "pca": f"clip_pca_{split}"}
    plots_md = {}
    for method, key in keys.items():
        context.log.info(f"{method} of {len(view)} CLIP embeddings ({split}) as brain run {key}")
        points = compute_projection(dataset, view, "clip_embeddings", key, method=method)
        plots_md[f"{method}_plot"] = png(plots.scatter_by_label(points, labels, f"CLIP {method.upper()}, {split}"))
    yield dg.MaterializeResult(metadata={"count": len(view), "brain_keys": ", ".join(keys.values()), **weights_metadata(info), **plots_md})
    present = set(dataset.list_brain_runs())
    yield dg.AssetCheckResult(
        asset_key="umap_projection",
        check_name="brain_runs_present",
        passed=set(keys.values()) <= present,
        metadata={"expected": str(sorted(keys.values())), "present": str(sorted(present))},
    )


class ZeroShotConfig(dg.Config):
    """Prompt templates and class names: a named set, or your own list."""

    template_set: str = "ensemble"  # "series", "official" or "ensemble"
    templates: Optional[list[str]] = None  # overrides template_set; each needs one "{}"
    class_names: str = "digits"  # "digits" ("0".."9") or "series" ("0 - zero", ...)


def resolve_prompts(config: ZeroShotConfig) -> tuple[list[str], list[str]]:
    if config.templates is None and config.template_set not in TEMPLATE_SETS:
        raise ValueError(f"unknown template_set {config.template_set!r}; choose one of {sorted(TEMPLATE_SETS)}")
    if config.class_names not in CLASS_NAME_SETS:
        raise ValueError(f"unknown class_names {config.class_names!r}; choose one of {sorted(CLASS_NAME_SETS)}")
    templates = validate_templates(config.templates if config.templates is not None else TEMPLATE_SETS[config.template_set])
    return templates, CLASS_NAME_SETS[config.class_names]


@dg.asset(
    partitions_def=split_partitions,
    deps=[clip_embeddings],
    group_name="clip",
    kinds={"pytorch", "fiftyone"},
    code_version="1",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("logits_finite", asset="zero_shot_predictions")],
)
def zero_shot_predictions(context: dg.AssetExecutionContext, config: ZeroShotConfig, settings: MnistSettings):
    """CLIP zero-shot label, confidence and 10 logits per sample from a prompt-template ensemble."""
    split = context.partition_key
    templates, class_names = resolve_prompts(config)  # refused before any work
    dataset = settings.dataset()
    view = split_view(dataset, split)
    info = clip_info(settings, split)
    device = settings.torch_device()
    clip = load_clip(info["model"], settings.clip_pretrained, device)
    if clip.weights != info["weights"]:
        raise ValueError(
            f"clip_embeddings[{split}] used weights {info['weights']!r} but the settings now give {clip.weights!r}; "
            "re-materialize clip_embeddings first."
        )
    classifier = text_classifier(clip, class_names, templates, device)
    embeddings = read_vectors(view, "clip_embeddings")
    logits = zero_shot_logits(clip, embeddings, classifier)
    sample_ids = view.values("id")
    write_classifications(view, "clip_zero_shot", logits, sample_ids)
    report = evaluate(dataset, view, "clip_zero_shot", f"eval_clip_{split}")
    metadata = prediction_metadata(report, split, "clip_zero_shot")
    context.log.info(f"clip_zero_shot[{split}]: accuracy {metadata['accuracy']:.4f} ({len(templates)} templates)")
    yield dg.MaterializeResult(
        metadata={
            "count": len(view),
            **weights_metadata(info),
            "templates": "\n".join(templates),
            "class_names": ", ".join(class_names),
            "preprocessing": f"invert={info['invert']}, pad={info['pad']}",
            **metadata,
        }
    )
    yield checks.check_finite("zero_shot_predictions", "logits", logits, (len(view), 10))
