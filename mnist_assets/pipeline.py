"""The whole graph of one declared dataset: its assets, jobs and source sensor, as Definitions."""

from pathlib import Path

import dagster as dg
import yaml

from mnist_assets import declared
from mnist_assets.assets import augmentation, clip, cnn, data_issues, dataset, duplicates, label_requests, lenet, quality, release, review
from mnist_assets.assets.common import Pipeline
from mnist_assets.automation import with_same_run_parents
from mnist_assets.ml.data.dataset_spec import DatasetSpec, DatasetSpecError
from mnist_assets.partitions import split_partitions
from mnist_assets.sensors import build_label_studio_sensor, build_review_sensor, build_source_sensor

STAGES = (dataset, review, clip, lenet, quality, label_requests, data_issues, duplicates, augmentation, cnn, release)
DEFS_FOLDER = declared.DEFS_FOLDER


def declared_spec(name: str) -> DatasetSpec:
    """The DatasetSpec of the `defs.yaml` that declares the dataset `name` (whatever its folder is
    called), for scripts and tests that work on one dataset; a ValueError listing the declared names
    when none does, a DatasetSpecError naming the file and what is wrong, in one line, when it is unusable."""
    path = declared.declaration_path(name, DEFS_FOLDER)
    try:
        return DatasetSpec(**yaml.safe_load(path.read_text())["attributes"])
    except Exception as error:  # YAML, a missing `attributes`, pydantic: the declaration is broken
        raise DatasetSpecError(f"the declaration {path} is broken: {declared.one_line_error(error)}") from error


def check_unique_names(folder: Path = DEFS_FOLDER) -> None:
    """Refuse two `defs.yaml` that declare one dataset name, or names FiftyOne cannot tell apart,
    naming both files (before Dagster would fail on their duplicate asset keys, or FiftyOne at ingest,
    without saying where they come from). The code location itself keeps one and reports the other
    as a broken declaration (components/declarations.py)."""
    names = {path.parent: declared.declared_name(path) for path in sorted(folder.glob("**/defs.yaml"))}
    for entry, kept in declared.colliding(names).items():
        first, second = kept / "defs.yaml", entry / "defs.yaml"
        same = names[entry] == names[kept]
        what = f"the dataset {names[kept]!r}" if same else f"{names[kept]!r} and {names[entry]!r}, which FiftyOne cannot tell apart,"
        raise DatasetSpecError(
            f"{first} and {second} both declare {what}; give one of them another `name` "
            "(it is the asset key prefix, the FiftyOne dataset and the data folder)."
        )


def declared_pipeline(name: str) -> Pipeline:
    return Pipeline(declared_spec(name))


def build_pipeline_defs(spec: DatasetSpec) -> dg.Definitions:
    """Every asset under `<name>/`, with jobs per partitioning, and sensors on the source files and the review."""
    p = Pipeline(spec)
    assets = with_same_run_parents([asset for stage in STAGES for asset in stage.build(p)])
    per_split = [key for asset in assets if asset.partitions_def is not None for key in asset.keys]
    unpartitioned = [key for asset in assets if asset.partitions_def is None for key in asset.keys]
    raw_job = dg.define_asset_job(
        f"{spec.name}_raw_job",
        selection=dg.AssetSelection.assets(p.key("raw_dataset")),
        partitions_def=split_partitions,
        description=f"Per split: re-ingest {spec.name}; automation carries the change down the lineage.",
    )
    jobs = [
        dg.define_asset_job(
            f"{spec.name}_per_split_job",
            selection=dg.AssetSelection.assets(*per_split),
            partitions_def=split_partitions,
            description=f"Per split: every per-split asset of {spec.name}.",
        ),
        dg.define_asset_job(
            f"{spec.name}_training_job",
            selection=dg.AssetSelection.assets(*unpartitioned),
            description=f"The unpartitioned assets of {spec.name}: checkpoint, augmented set, fine-tuned model, comparison.",
        ),
        dg.define_asset_job(
            f"{spec.name}_clip_job",
            selection=dg.AssetSelection.groups(p.group("clip")),
            partitions_def=split_partitions,
            description=f"Per split: the CLIP branch of {spec.name}.",
        ),
        raw_job,
    ]
    raw, review = p.key("raw_dataset"), p.key("label_review")
    sensors = [build_source_sensor(spec, raw_job, raw), build_review_sensor(spec, review, raw), build_label_studio_sensor(spec)]
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors)
