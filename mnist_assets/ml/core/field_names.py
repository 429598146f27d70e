"""The names the pipeline writes into FiftyOne: sample fields, eval keys, brain keys and saved views.

Users, the App and their own scripts rely on these (the project's contract: keep them stable), so each is spelled once,
here; assets and the plain ML code import them instead of repeating string literals.
"""

# Sample fields written at ingest.
SPLIT = "split"
SOURCE_INDEX = "source_index"  # position in the source file, or a hash of a folder image's path
IMAGE_HASH = "image_hash"  # a short hash of the pixels: re-ingest compares it
GROUND_TRUTH = "ground_truth"  # the label in use: the source's, or a person's decision (review log)
GROUND_TRUTH_ORIGINAL = "ground_truth_original"  # the source's label, as ingested; benchmarks read it
GROUND_TRUTH_CLEAN = "ground_truth_clean"  # declared label noise only: the true label; only benchmarks and tests read it

# Human review (ml/decisions.py): the latest decision of the review log on each sample, and the
# sample tags a person sets in the App to record one.
REVIEW_DECISION = "review_decision"  # relabel, exclude or confirm; None: undecided
REVIEW_LABEL = "review_label"  # the label the log last gave ground_truth (None: the source's); a differing ground_truth is a person's edit
TAG_EXCLUDE = "review:exclude"  # leave the sample out of training, fold models, evaluation, augmentation
TAG_CONFIRM = "review:ok"  # the source's label is right
RELABEL_TAG_PREFIX = "relabel:"  # relabel:<class>

# Sample fields written by the models.
CLIP_EMBEDDINGS = "clip_embeddings"
CLIP_ZERO_SHOT = "clip_zero_shot"
LENET_PREDICTIONS = "lenet_predictions"
LENET_OOF_PREDICTIONS = "lenet_oof_predictions"  # train only: K-fold, each from a model that did not see it
FOLD_ENSEMBLE_PREDICTIONS = "fold_ensemble_predictions"  # the K fold models' mean probability, every split
LENET_EMBEDDINGS = "lenet_embeddings"
FINETUNED_PREDICTIONS = "finetuned_predictions"
RELEASE_PREDICTIONS = "release_predictions"  # the released ONNX model's, every split (model_release)

# Quality scores (hardness_scores).
HARDNESS = "hardness"
MISTAKENNESS = "mistakenness"
UNIQUENESS = "uniqueness"
LABEL_QUALITY = "label_quality"  # cleanlab's
DATA_ISSUES = "data_issues"  # the names of the data issues a sample is flagged for (issue_<type>: each one's score)
SOURCE_WIDTH, SOURCE_HEIGHT, SOURCE_MODE, SOURCE_PATH = "source_width", "source_height", "source_mode", "source_path"  # a folder's file
LABEL_PRIORITY = "label_priority"  # unlabeled samples: which to label next (higher: sooner); the to-label view's order
REVIEW_PRIORITY = "review_priority"  # the platform's estimate that the label is wrong (higher: review sooner); review queues' order


def scored_predictions(split: str) -> str:
    """The predictions a split's quality scores and sample selection read, out of sample on every
    split: on train each sample's held-out fold model (the checkpoint memorized train), elsewhere
    the fold models' ensemble (it ranked the confirmed label errors better than the checkpoint)."""
    return LENET_OOF_PREDICTIONS if split == "train" else FOLD_ENSEMBLE_PREDICTIONS


# The prediction fields the comparison reads, with the names people see.
MODEL_FIELDS = {
    CLIP_ZERO_SHOT: "CLIP zero-shot",
    LENET_PREDICTIONS: "LeNet",
    FINETUNED_PREDICTIONS: "fine-tuned LeNet",
    FOLD_ENSEMBLE_PREDICTIONS: "LeNet fold ensemble",  # the mean probabilities of the K fold models
}

# Eval key prefixes: the evaluation of a split is stored as `<prefix>_<split>`.
EVAL_CLIP = "eval_clip"
EVAL_LENET = "eval_lenet"
EVAL_FINETUNED = "eval_finetuned"
EVAL_FOLD_ENSEMBLE = "eval_fold_ensemble"
EVAL_RELEASE = "eval_release"


def eval_key(prefix: str, split: str) -> str:
    return f"{prefix}_{split}"


def clip_projection_keys(split: str) -> dict[str, str]:
    """The brain keys of a split's CLIP projections, by method."""
    return {"umap": f"clip_umap_{split}", "pca": f"clip_pca_{split}"}


def lenet_umap_key(split: str) -> str:
    return f"lenet_umap_{split}"


def saved_view_names(split: str) -> dict[str, tuple[str, bool]]:
    """The dataset's ranked saved views for a split: name -> (the quality field it sorts on,
    highest first?). Likely mislabeled = lowest cleanlab label quality (the probability of the given
    label) first: on full MNIST it ranked the confirmed label errors at least as well as brain's
    mistakenness at every cut-off (docs/label-errors.md)."""
    return {
        f"hardest-{split}": (HARDNESS, True),
        f"likely-mislabeled-{split}": (LABEL_QUALITY, False),
        f"most-unique-{split}": (UNIQUENESS, True),
    }


DUPLICATES_VIEW = "duplicates"  # every group of near duplicates, the kept image first


def leaks_view_name(split: str) -> str:
    """The saved view of a split's images that have a near copy in another split, each followed by its copies."""
    return f"leaks-{split}"


def issues_view_name(issue: str, split: str) -> str:
    """The saved view of a split's samples flagged for one data issue, worst first."""
    return f"issues-{issue.replace('_', '-')}-{split}"


# Every split's review queue in one order: validation's first (its labels decide which state each model
# keeps, the accuracy gates and which release wins), then train's (what models learn from), then test's
# (which only measure): docs/label-cleaning.md, "When validation is as noisy as train".
REVIEW_QUEUE_VIEW = "review-queue"
TO_LABEL_VIEW = "to-label"  # the next batch of unlabeled samples to label, label_priority first
REVIEW_ORDER = ("validation", "train", "test")


def review_queue_view_name(split: str) -> str:
    """The saved view of a split's likely mislabeled samples that no one has decided on yet."""
    return f"review-queue-{split}"


def label_issues_view_name(split: str) -> str:
    """The saved view of cleanlab's label issues of a split, lowest label quality first."""
    return f"label-issues-{split}"


# The data issue types: each a tag and an `issue_<type>` field on the samples that have it, and a
# name a declaration's `issue_gates` uses (ml/quality/data_issues.py finds them).
PIXEL_ISSUE_TYPES = (  # judged on the pixels and the files alone
    "dark",
    "light",
    "blurry",
    "low_information",
    "odd_size",
    "odd_aspect_ratio",
    "grayscale",
    "outlier",
    "near_duplicate",
)
CROSS_SPLIT_ISSUE_TYPES = ("leak",)  # judged against the other splits' pixels
MODEL_ISSUE_TYPES = ("underperforming_group",)  # judged on a model's out-of-sample predictions
ISSUE_TYPES = (*PIXEL_ISSUE_TYPES, *CROSS_SPLIT_ISSUE_TYPES, *MODEL_ISSUE_TYPES)
