"""What every asset module of a dataset's graph shares: the shape of an asset's declaration (its key,
group, partitions, automation, pool), and how an asset reads what its parents recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from mnist_assets.automation import follows_lineage
from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import DatasetStore, Settings

# Training, embedding and UMAP run in this concurrency pool so that concurrent
# partitions don't oversubscribe the machine (set its limit in the UI or dagster.yaml).
HEAVY_POOL = "heavy"


@dataclass(frozen=True)
class Pipeline:
    """One declared dataset's graph: asset keys under `<name>/`, groups `<name>_<stage>`."""

    spec: DatasetSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, asset])

    def group(self, stage: str) -> str:
        return f"{self.spec.name}_{stage}"

    def store(self, settings: Settings) -> DatasetStore:
        return settings.store(self.spec.name)

    def classes(self) -> list[str]:
        return self.spec.classes()

    def check(self, name: str, asset: str, **kwargs) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name, asset=self.key(asset), **kwargs)

    def asset(
        self,
        name: str,
        *,
        stage: str,
        per_split: bool,
        parents: Sequence[str | dg.AssetKey | dg.AssetDep] = (),
        heavy: bool = False,
        checks: Sequence[dg.AssetCheckSpec] = (),
        automation_condition: dg.AutomationCondition | None = None,
        **declared,
    ):
        """The decorator of one asset of the graph, in the shape every asset shares: key `<dataset>/<name>`,
        group `<dataset>_<stage>`, one partition per split (or none), parents by name (or as an AssetDep
        with its partition mapping), the `heavy` pool where it trains or embeds, and `follows_lineage()`
        unless it says otherwise. The rest (`kinds`, `code_version`, `description`) as `dg.asset` takes it."""
        return dg.asset(
            key=self.key(name),
            group_name=self.group(stage),
            partitions_def=split_partitions if per_split else None,
            deps=[self.key(parent) if isinstance(parent, str) else parent for parent in parents] or None,
            pool=HEAVY_POOL if heavy else None,
            check_specs=list(checks) or None,
            automation_condition=automation_condition or follows_lineage(),
            **declared,
        )


@contextlib.contextmanager
def materialize_first(p: Pipeline, asset: str, split: str | None = None):
    """Plain-ML errors about a missing or unusable input, re-raised naming the asset that makes it."""
    try:
        yield
    except (MissingInputError, FileNotFoundError) as error:
        target = f"{p.name}/{asset}" + (f"[{split}]" if split else "")
        raise type(error)(f"{error}; materialize {target} (again) first.") from error


def latest_materialization(instance, key: dg.AssetKey, partition: str | None = None):
    """The event record of `key`'s latest materialization (of `partition`), None if it has none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def parent_metadata(context, key: dg.AssetKey, partition: str | None = None, missing: dict | None = None) -> dict:
    """What a parent recorded at its latest materialization (of `partition`), as plain values: the
    way an asset reads what its parents said, along the lineage the UI shows. Without one, `missing`
    if given, else an error naming what to materialize."""
    record = latest_materialization(context.instance, key, partition)
    if record is None and missing is not None:
        return missing
    if record is None:
        target = key.to_user_string() + (f"[{partition}]" if partition else "")
        raise MissingInputError(f"{target} has no materialization; materialize it first.")
    return {name: value.value for name, value in record.asset_materialization.metadata.items()}


def parent_data_version(context, key: dg.AssetKey, partition: str | None = None) -> str | None:
    """The data version of a parent's latest materialization (of `partition`)."""
    record = latest_materialization(context.instance, key, partition)
    return record.asset_materialization.tags.get(DATA_VERSION_TAG) if record else None


def limited_run(context, p: Pipeline, settings: Settings) -> bool:
    """A quick run: epochs cut by MNIST_ASSETS_EPOCHS, or training data that was ingested with a
    sample limit (as label_review recorded it, whatever the environment says now)."""
    if settings.epochs is not None:
        return True
    recorded = [parent_metadata(context, p.key("label_review"), split, missing={}).get("limited") for split in ("train", "validation")]
    # In an instance that did not record the review (data materialized elsewhere), the setting says.
    return any(recorded) if None not in recorded else settings.limit is not None
