"""Every kind of data issue, not only wrong labels: CleanVision's image checks and cleanlab's outliers
and class imbalance (ml/quality/data_issues.py), per split, judged against the train split."""

import dataclasses
import functools
import json
import time

import dagster as dg
import numpy as np

from mnist_assets.assets.common import Pipeline
from mnist_assets.metadata import class_counts, markdown_table, png
from mnist_assets.ml.core.field_names import DATA_ISSUES, GROUND_TRUTH, ISSUE_TYPES, SOURCE_HEIGHT, SOURCE_WIDTH, issues_view_name
from mnist_assets.ml.core.files import atomic_write_bytes
from mnist_assets.ml.data.dataset_spec import SPLITS
from mnist_assets.ml.quality.data_issues import issue_field
from mnist_assets.resources import Settings

WORST_SHOWN = 8  # per flagged type, in the metadata's grid


def check_name(issue: str) -> str:
    return f"few_{issue}"


def build(p: Pipeline) -> list:
    gates = p.spec.issue_gates or {}

    @p.asset(
        "data_issues",
        stage="quality",
        per_split=True,
        # What it reads: the split's pixels, its files' sizes and the labels in use (excluded samples left
        # out), train's, which every split is judged against, and the other splits' pixels (leaks); for underperforming groups the
        # out-of-sample predictions hardness_scores scores and LeNet's embeddings (hardness_scores
        # reads both: after it, one run follows each new model).
        # With `outlier_spaces: [pixels, clip]` CLIP's embeddings too, train's as well as the split's.
        parents=["hardness_scores", dg.AssetDep(p.key("label_review"), partition_mapping=dg.AllPartitionMapping())]
        + ([dg.AssetDep(p.key("clip_embeddings"), partition_mapping=dg.AllPartitionMapping())] if "clip" in p.spec.outlier_spaces else []),
        checks=[
            p.check(
                check_name(issue),
                "data_issues",
                blocking=issue in gates,
                description=(
                    f"At most {gates[issue]:.1%} of the split flagged {issue} (issue_gates)."
                    if issue in gates
                    else f"Warns when any sample is flagged {issue}."
                ),
            )
            for issue in ISSUE_TYPES
        ]
        + [p.check("class_imbalance", "data_issues", description="Warns when a class holds under 0.1 / K of the split (cleanlab's rule).")],
        kinds={"fiftyone"},
        code_version="4",  # 3: leak; 4: unlabeled samples judged on their pixels
        description=(
            "Per sample a score per data issue (issue_<type>, in [0, 1], higher: worse) and the issues it is flagged for "
            f"(data_issues): {', '.join(ISSUE_TYPES)}, by CleanVision's and cleanlab's definitions judged against train; "
            "class imbalance per split; saved views issues-<type>-<split>, worst first."
        ),
    )
    def data_issues(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.quality import data_issues as issues

        started, split = time.perf_counter(), context.partition_key
        judged = judge_split(context, p, settings, split)
        context.log.info(f"{split}: {len(judged.labels)} samples; flagged {judged.found.counts()}")
        judged.save(split)
        labels_in_use = [x for x in judged.view.values(f"{GROUND_TRUTH}.label") if x is not None]
        imbalance = issues.class_imbalance(class_counts(labels_in_use, p.classes()))
        metadata = {**judged.metadata(split, gates, imbalance), "seconds": round(time.perf_counter() - started, 1)}
        yield dg.MaterializeResult(metadata=metadata)
        yield from judged.checks(p, split, gates, imbalance)

    return [data_issues]


@dataclasses.dataclass
class Judged:
    """A split judged for every data issue: its samples, pixels and labels, the issues found, and
    the underperforming groups behind one of them."""

    dataset: object
    view: object
    tensors: object
    images: np.ndarray
    labels: np.ndarray
    found: object
    groups: object

    def save(self, split: str) -> None:
        """Scores and flags on the samples, and a saved view per issue, worst first."""
        from mnist_assets.ml.store.fiftyone_store import save_view

        write_issues(self.view, self.tensors.sample_ids, self.found)
        for issue in ISSUE_TYPES:
            flagged = self.view.select([self.tensors.sample_ids[i] for i in np.flatnonzero(self.found.flags[issue])])
            save_view(self.dataset, issues_view_name(issue, split), flagged.sort_by(issue_field(issue), reverse=True))

    @functools.cached_property
    def counts(self) -> dict[str, int]:
        """Flagged samples per issue, counted once for the metadata and the checks."""
        return self.found.counts()

    def metadata(self, split: str, gates: dict, imbalance: dict) -> dict:
        counts, total = self.counts, max(len(self.labels), 1)
        rows = [
            {"issue": issue, "flagged": counts[issue], "share": round(counts[issue] / total, 4), "gate": gates.get(issue, "")}
            for issue in ISSUE_TYPES
        ]
        metadata = {
            "count": len(self.labels),
            **{f"{issue}_flagged": counts[issue] for issue in ISSUE_TYPES},
            "flagged_any": int(np.any(np.stack(list(self.found.flags.values())), axis=0).sum()),
            "issues": markdown_table(rows),
            "worst_groups": markdown_table(
                [{"cluster": c, "samples": size, "self_confidence_over_split": ratio} for c, size, ratio in self.groups.clusters[:5]]
            ),
            "smallest_class": str(imbalance["smallest_class"]),
            "smallest_class_over_median": imbalance["smallest_over_median"],
            "imbalanced_classes": ", ".join(imbalance["imbalanced_classes"]) or "none",
            "saved_views": ", ".join(issues_view_name(issue, split) for issue in ISSUE_TYPES),
            "outlier_spaces": ", ".join(f"{name} {int(flags.sum())}" for name, (_, flags) in self.found.outliers.items()),
        }
        if any(counts.values()):
            metadata["worst_examples"] = png(worst_grid(self.images, self.found))
        return metadata

    def checks(self, p: Pipeline, split: str, gates: dict, imbalance: dict):
        """Per issue: blocking under its declared gate, else a warning when any sample is flagged; and class imbalance."""
        counts = self.counts
        for issue in ISSUE_TYPES:
            share = counts[issue] / max(len(self.labels), 1)
            yield dg.AssetCheckResult(
                asset_key=p.key("data_issues"),
                check_name=check_name(issue),
                passed=share <= gates[issue] if issue in gates else counts[issue] == 0,
                severity=dg.AssetCheckSeverity.ERROR if issue in gates else dg.AssetCheckSeverity.WARN,
                metadata={"flagged": counts[issue], "share": round(share, 4), "view": issues_view_name(issue, split)},
            )
        imbalanced = ", ".join(imbalance["imbalanced_classes"]) or "none"
        yield dg.AssetCheckResult(
            asset_key=p.key("data_issues"),
            check_name="class_imbalance",
            passed=not imbalance["imbalanced_classes"],
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"imbalanced_classes": imbalanced, "smallest_over_median": imbalance["smallest_over_median"]},
        )


def judge_split(context, p: Pipeline, settings: Settings, split: str) -> Judged:
    """Every data issue of `split`, judged against train (its outlier reference cached beside the
    dataset for the other splits) and, for leaks, against the other splits' pixels."""
    from mnist_assets.assets.data import split_tensors
    from mnist_assets.ml.quality import data_issues as issues
    from mnist_assets.ml.quality import image_issues

    store = p.store(settings)

    def read(part: str):
        dataset, view, tensors = split_tensors(p, settings, part, store, standardize=False, with_unlabeled=True)
        images = image_issues.channels_last(tensors.images.numpy())
        widths, heights = file_sizes(view, p.spec.image_size)
        return dataset, view, tensors, images, widths, heights

    parts = {part: read(part) for part in SPLITS}  # every split: leaks are copies in the others
    dataset, view, tensors, images, widths, heights = parts[split]
    labels = tensors.labels.numpy()
    properties = image_issues.image_properties(images)
    views = {split: view}
    if split == "train":
        train = (images, widths, heights, labels, properties)
    else:
        _, views["train"], train_tensors, train_images, train_widths, train_heights = parts["train"]
        train = (train_images, train_widths, train_heights, train_tensors.labels.numpy(), image_issues.image_properties(train_images))
    clip = clip_embeddings_of(context, p, views) if "clip" in p.spec.outlier_spaces else {}
    train_embeddings = {"clip": clip["train"]} if clip else {}
    # train's outlier scale and fence per space, for the other splits: the key is what they depend on
    cache = store.dir / "data_issues_reference.json"
    keys = {name: issues.train_fingerprint(vectors, train[3]) for name, vectors in {"pixels": train[0], **train_embeddings}.items()}
    cached = {} if split == "train" else cached_outlier_references(cache, keys)
    reference = issues.reference_from_train(train[4], train[1], train[2], train[0], train[3], p.spec.channels, cached, train_embeddings)
    if split == "train":
        spaces = {name: {"train": keys[name], "outlier": list(space.cached)} for name, space in reference.outliers.items()}
        atomic_write_bytes(cache, json.dumps(spaces).encode())
    embeddings = {"clip": clip[split]} if clip else None
    found = issues.split_issues(properties, widths, heights, images, labels, reference, is_train=split == "train", embeddings=embeddings)
    found.scores["leak"], found.flags["leak"] = issues.leaks(images, np.concatenate([parts[other][3] for other in parts if other != split]))
    groups = underperforming_groups(p, view, split, labels)
    found.scores["underperforming_group"], found.flags["underperforming_group"] = groups.scores, groups.flags
    return Judged(dataset, view, tensors, images, labels, found, groups)


def underperforming_groups(p: Pipeline, view, split: str, labels: np.ndarray):
    """underperforming_group of the split (ml/quality/data_issues.py) from the out-of-sample predictions
    hardness_scores scores (on train the out-of-fold models', elsewhere the fold ensemble's) and
    LeNet's embeddings, in the view's order."""
    from scipy.special import softmax

    from mnist_assets.assets.common import materialize_first
    from mnist_assets.ml.core.field_names import LENET_EMBEDDINGS, scored_predictions
    from mnist_assets.ml.quality import data_issues as issues
    from mnist_assets.ml.store.fiftyone_store import read_vectors

    predictions = scored_predictions(split)
    known = np.flatnonzero(labels >= 0)  # out-of-sample predictions, and a label to judge, exist on labeled samples
    with materialize_first(p, "hardness_scores", split):
        labeled_view = view.select(np.asarray(view.values("id"))[known].tolist(), ordered=True)
        logits = read_vectors(labeled_view, f"{predictions}.logits")
        embeddings = read_vectors(labeled_view, LENET_EMBEDDINGS)
    groups = issues.underperforming_group(embeddings, softmax(logits, axis=1), labels[known])
    if len(known) == len(labels):
        return groups
    scores, flags = np.zeros(len(labels)), np.zeros(len(labels), dtype=bool)  # an unlabeled sample: not judged here
    scores[known], flags[known] = groups.scores, groups.flags
    return dataclasses.replace(groups, scores=scores, flags=flags)


def clip_embeddings_of(context, p: Pipeline, views: dict) -> dict[str, np.ndarray]:
    """CLIP's embeddings of each split's view, in view order: refused where clip_embeddings ran with
    random weights (no space to judge outliers in) or with other weights for train than for the split."""
    from mnist_assets.assets.clip import clip_info
    from mnist_assets.assets.common import materialize_first
    from mnist_assets.ml.core.field_names import CLIP_EMBEDDINGS
    from mnist_assets.ml.store.fiftyone_store import read_vectors

    infos = {part: clip_info(context, p, part) for part in views}
    if any(info["weights"] == "random" for info in infos.values()):
        raise ValueError(
            f"{p.name} declares outlier_spaces [pixels, clip], but clip_embeddings ran with RANDOM CLIP weights "
            "(MNIST_ASSETS_CLIP_PRETRAINED=none): no space to judge outliers in. Set real weights (docs/settings.md) "
            "and materialize clip_embeddings again, or declare outlier_spaces: [pixels]."
        )
    used = {part: (info["model"], info["weights"], info["invert"], info["pad"]) for part, info in infos.items()}
    if len(set(used.values())) > 1:
        raise ValueError(f"clip_embeddings of {', '.join(used)} come from different CLIP settings {used}: materialize them again alike.")
    embeddings = {}
    for part, view in views.items():
        with materialize_first(p, "clip_embeddings", part):
            embeddings[part] = read_vectors(view, CLIP_EMBEDDINGS)
    return embeddings


def cached_outlier_references(path, keys: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Per outlier space, train's (scale, fence) as its last data_issues run wrote them, where that run
    saw the same train vectors (`keys`: space -> train_fingerprint)."""
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {
        name: tuple(entry["outlier"])
        for name, entry in cached.items()
        if isinstance(entry, dict) and name in keys and entry.get("train") == keys[name]
    }


def file_sizes(view, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's file width and height before ingest converted it (folders record them); the
    declared size where none is recorded (the IDX sources: every image is the source's 28x28)."""
    if SOURCE_WIDTH not in view.get_field_schema():
        return np.full(len(view), size), np.full(len(view), size)
    widths, heights = view.values([SOURCE_WIDTH, SOURCE_HEIGHT])
    return (np.array([w or size for w in widths], dtype=np.float64), np.array([h or size for h in heights], dtype=np.float64))


def write_issues(view, sample_ids: list[str], found) -> None:
    """issue_<type> (floats) and data_issues (names) of every sample, in one bulk write each."""
    import fiftyone as fo

    from mnist_assets.ml.store.bulk_writes import set_fields
    from mnist_assets.ml.store.fiftyone_store import declare_field, write_floats

    spaces = {issue_field(f"outlier_{name}"): scores for name, (scores, _) in found.outliers.items()} if len(found.outliers) > 1 else {}
    write_floats(view, {**{issue_field(issue): scores for issue, scores in found.scores.items()}, **spaces}, sample_ids)
    declare_field(view._dataset, DATA_ISSUES, fo.ListField, subfield=fo.StringField)
    set_fields(view._dataset, sample_ids, {DATA_ISSUES: found.flagged_types()})


def worst_grid(images: np.ndarray, found) -> bytes:
    """Up to WORST_SHOWN of the worst flagged samples of each flagged type, titled with type and score."""
    from mnist_assets.ml.figures import plots

    shown, titles = [], []
    for issue in ISSUE_TYPES:
        flagged = np.flatnonzero(found.flags[issue])
        worst = flagged[np.argsort(-found.scores[issue][flagged], kind="stable")][:WORST_SHOWN]
        shown += list(worst)
        titles += [f"{issue.replace('_', ' ')}\n{found.scores[issue][i]:.2f}" for i in worst]
    return plots.image_grid(images[shown], titles, columns=WORST_SHOWN)
