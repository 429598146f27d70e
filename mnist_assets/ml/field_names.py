"""The names the pipeline writes into FiftyOne: sample fields, eval keys, brain keys and saved views.

Users, the App and their own scripts rely on these (design.md's contract), so each is spelled once,
here; assets and the plain ML code import them instead of repeating string literals.
"""

# Sample fields written at ingest.
SPLIT = "split"
SOURCE_INDEX = "source_index"  # position in the source file, or a hash of a folder image's path
IMAGE_HASH = "image_hash"  # a short hash of the pixels: re-ingest compares it
GROUND_TRUTH = "ground_truth"

# Sample fields written by the models.
CLIP_EMBEDDINGS = "clip_embeddings"
CLIP_ZERO_SHOT = "clip_zero_shot"
LENET_PREDICTIONS = "lenet_predictions"
LENET_OOF_PREDICTIONS = "lenet_oof_predictions"  # train only: K-fold, each from a model that did not see it
LENET_EMBEDDINGS = "lenet_embeddings"
FINETUNED_PREDICTIONS = "finetuned_predictions"

# Quality scores (hardness_scores).
HARDNESS = "hardness"
MISTAKENNESS = "mistakenness"
UNIQUENESS = "uniqueness"
QUALITY_FIELDS = (HARDNESS, MISTAKENNESS, UNIQUENESS)
LABEL_QUALITY = "label_quality"  # cleanlab's


def scored_predictions(split: str) -> str:
    """The predictions a split's quality scores and sample selection read: on train the out-of-sample
    ones (the checkpoint memorized train), elsewhere the checkpoint's."""
    return LENET_OOF_PREDICTIONS if split == "train" else LENET_PREDICTIONS

# The prediction fields the comparison reads, with the names people see.
MODEL_FIELDS = {CLIP_ZERO_SHOT: "CLIP zero-shot", LENET_PREDICTIONS: "LeNet", FINETUNED_PREDICTIONS: "fine-tuned LeNet"}

# Eval key prefixes: the evaluation of a split is stored as `<prefix>_<split>`.
EVAL_CLIP = "eval_clip"
EVAL_LENET = "eval_lenet"
EVAL_FINETUNED = "eval_finetuned"


def eval_key(prefix: str, split: str) -> str:
    return f"{prefix}_{split}"


def clip_projection_keys(split: str) -> dict[str, str]:
    """The brain keys of a split's CLIP projections, by method."""
    return {"umap": f"clip_umap_{split}", "pca": f"clip_pca_{split}"}


def lenet_umap_key(split: str) -> str:
    return f"lenet_umap_{split}"


def saved_view_names(split: str) -> dict[str, str]:
    """The dataset's saved views for a split, keyed by the quality field they sort on."""
    return {HARDNESS: f"hardest-{split}", MISTAKENNESS: f"likely-mislabeled-{split}", UNIQUENESS: f"most-unique-{split}"}


DUPLICATES_VIEW = "duplicates"  # every group of near duplicates, the kept image first


def leaks_view_name(split: str) -> str:
    """The saved view of a split's images that have a near copy in another split, each followed by its copies."""
    return f"leaks-{split}"


def label_issues_view_name(split: str) -> str:
    """The saved view of cleanlab's label issues of a split, lowest label quality first."""
    return f"label-issues-{split}"
