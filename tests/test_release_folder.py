"""Releases that do not pile up, and predict on damaged release folders (issue 44, items 8a and 4):
the release in use and the newest `keep_releases` versions are kept, older ones removed after each
switch, never one in use or one another publisher is switching to; a damaged card or a `current`
link whose version is gone is one line naming the file or the version to point it at."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from processes import REPO
from pydantic import ValidationError

from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.release import folder as release_folder


def version(day: int, tag: str = "") -> str:
    """A name as new_version makes them: sorted by name, sorted by time."""
    return f"202612{day:02d}T101500Z-{tag or f'{day:08d}'}"


def card(model: str, accuracy: float = 0.9) -> dict:
    return {"model": model, "candidates": [{"model": model, "validation_accuracy": accuracy}], "released_at": "now"}


def publish(folder, name: str, graph: bytes | None = None) -> None:
    release_folder.promote(folder, name, graph or name.encode(), card(name), f"card {name}")


def age(folder, hours: float = 2) -> None:
    """Make every version older than the grace period, as versions from earlier runs are."""
    then = time.time() - hours * 3600
    for path in (folder / "versions").iterdir():
        os.utime(path, (then, then), follow_symlinks=False)


def kept(folder) -> list[str]:
    return [row["version"] for row in release_folder.list_releases(folder)]


@pytest.mark.parametrize("value", [0, -1, 2.5, None])
def test_keep_releases_is_at_least_one_whole_number(value):
    assert DatasetSpec(name="pets", source="mnist").keep_releases == 5
    assert DatasetSpec(name="pets", source="mnist", keep_releases=1).keep_releases == 1
    with pytest.raises(ValidationError, match=r"keep_releases\n.*(greater than or equal to 1|valid integer)"):
        DatasetSpec(name="pets", source="mnist", keep_releases=value)


def test_the_current_and_the_newest_versions_are_kept_the_older_removed_after_the_switch(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    for name, data in (("model.onnx", b"old model"), ("model_card.json", json.dumps(card("old")).encode()), ("model_card.md", b"old")):
        (folder / name).write_bytes(data)  # a release from before versions: it becomes `legacy`, the oldest
    for day in range(1, 8):
        publish(folder, version(day))
        age(folder)
        pruned = release_folder.prune(folder, keep=3)
        assert (folder / "model.onnx").read_bytes() == version(day).encode()  # the new release stays in place
    assert pruned == {"kept": [version(5), version(6), version(7)], "removed": [version(4)], "failed": []}
    assert kept(folder) == [version(5), version(6), version(7)]  # legacy sorts first, so it went first
    assert [row["current"] for row in release_folder.list_releases(folder)] == [False, False, True]
    assert not [path for path in (folder / "versions").iterdir() if path.name.startswith(".")]  # no half-removed folder left
    # keep 1 leaves only the release in use; a keep below 1 is refused, nothing removed.
    with pytest.raises(ValueError, match="keep_releases: 1 or more"):
        release_folder.prune(folder, keep=0)
    assert release_folder.prune(folder, keep=1)["removed"] == [version(5), version(6)]
    assert kept(folder) == [version(7)] and (folder / "model_card.md").read_text() == f"card {version(7)}"


def test_pruning_never_removes_the_release_in_use_one_being_written_or_one_about_to_be_switched_to(tmp_path, monkeypatch):
    folder = tmp_path / "release"
    for day in (1, 2, 3):
        publish(folder, version(day))
    # A person pointed `current` back at the oldest version: it stays, the newest too.
    release_folder._link(folder / "current", f"versions/{version(1)}")
    age(folder)
    assert release_folder.prune(folder, keep=1) == {"kept": [version(1), version(3)], "removed": [version(2)], "failed": []}
    # A folder still being filled by a running writer (hidden, temporary) is never touched.
    staging = folder / "versions" / release_folder.temporary_name(version(9))
    staging.mkdir()
    # Two publishers at once: A has renamed its version in (its name older: it was named before it
    # trained) and is about to switch `current` when B publishes and prunes with keep 1.
    real_link = release_folder._link
    interleaved = []

    def b_publishes_first(path, target):
        if path.name == "current" and target.endswith("-a") and not interleaved:
            interleaved.append(release_folder.promote(folder, version(5, "b"), b"model b", card("b"), "card b"))
            interleaved.append(release_folder.prune(folder, keep=1))
        real_link(path, target)

    monkeypatch.setattr(release_folder, "_link", b_publishes_first)
    publish(folder, version(4, "a"), b"model a")
    assert interleaved[1] == {"kept": [version(4, "a"), version(5, "b")], "removed": [version(1), version(3)], "failed": []}
    assert (folder / "model.onnx").read_bytes() == b"model a"  # A's release is in place, its card with it
    assert json.loads((folder / "model_card.json").read_text())["model"] == version(4, "a")
    assert staging.is_dir()
    # Once old, A's version stays because it is in use, B's because it is the newest.
    age(folder)
    assert release_folder.prune(folder, keep=1) == {"kept": [version(4, "a"), version(5, "b")], "removed": [], "failed": []}


def test_a_version_that_cannot_be_removed_is_reported_and_kept_whole(tmp_path, monkeypatch):
    folder = tmp_path / "release"
    for day in (1, 2, 3):
        publish(folder, version(day))
    age(folder)
    real_rmtree = shutil.rmtree

    def refuse_day_one(path, *args, **kwargs):
        if version(1) in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(release_folder.shutil, "rmtree", refuse_day_one)
    pruned = release_folder.prune(folder, keep=1)
    assert pruned["removed"] == [version(2)] and pruned["kept"] == [version(1), version(3)]
    assert len(pruned["failed"]) == 1 and pruned["failed"][0].startswith(f"{version(1)}: [Errno 13] Permission denied")
    rows = release_folder.list_releases(folder)
    assert [(row["version"], row["problem"], row["current"]) for row in rows] == [(version(1), "", False), (version(3), "", True)]
    monkeypatch.setattr(release_folder.shutil, "rmtree", real_rmtree)
    assert release_folder.prune(folder, keep=1)["removed"] == [version(1)]  # tried again at the next release


# --- predict on damaged release folders ------------------------------------------------------------


def mnist_model() -> bytes:
    """A LeNet-5 (random weights) exported as model_release exports MNIST's, with its metadata."""
    import torch

    from mnist_assets.ml.data.image_conversion import Conversion
    from mnist_assets.ml.models.architectures import build_model
    from mnist_assets.ml.release import export as release

    torch.manual_seed(0)
    conversion = Conversion(32, 1, "pad", source_size=28, background=0)
    model = release.Probabilities([build_model("lenet5", 0, num_classes=10, in_channels=1, image_size=32)], 0.1, 0.3)
    metadata = {
        "dataset": "mnist",
        "model": "lenet_checkpoint",
        "classes": json.dumps([str(d) for d in range(10)]),
        **conversion.metadata(),
    }
    return release.export_onnx(model, 1, 32, metadata)


def predict(*arguments, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "MNIST_ASSETS_HOME": str(home)}
    command = [sys.executable, "-m", "mnist_assets.predict", *map(str, arguments)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_releases_lists_every_version_and_names_each_damaged_one(tmp_path, monkeypatch, capsys):
    from mnist_assets import predict as predict_module

    monkeypatch.setenv("MNIST_ASSETS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "mnist" / "release"
    for day in range(1, 6):
        publish(folder, version(day))
    versions = folder / "versions"
    (versions / version(2) / "model_card.json").write_text('{"model": "lenet')  # cut short
    (versions / version(3) / "model_card.json").write_text("[]")
    (versions / version(4) / "model.onnx").unlink()
    (versions / version(5) / "model_card.json").write_bytes(b"\xff\xfe")  # the current one
    assert predict_module.main(["--dataset", "mnist", "--releases"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"  {version(1)}  {version(1)}  validation 0.9  now"]
    assert err.splitlines() == [
        f"error: release {version(2)}: {versions / version(2) / 'model_card.json'} is not JSON "
        "(Unterminated string starting at: line 1 column 11 (char 10)); restore the file, or remove the version's folder",
        f"error: release {version(3)}: {versions / version(3) / 'model_card.json'} is not a model card (a JSON list, not an object); "
        "restore the file, or remove the version's folder",
        f"error: release {version(4)}: {versions / version(4) / 'model.onnx'} is missing; restore the file, or remove the version's folder",
        f"error: release {version(5)} (current): {versions / version(5) / 'model_card.json'} is not text; restore the file",
    ]


def test_a_current_link_whose_version_is_gone_says_which_version_to_point_it_at(tmp_path):
    folder = tmp_path / "datasets" / "mnist" / "release"
    publish(folder, version(1), mnist_model())
    publish(folder, version(2), mnist_model())
    (folder / "versions" / version(2) / "model_card.json").write_text("{")  # damaged: not a version to go back to
    publish(folder, version(3), mnist_model())
    shutil.rmtree(folder / "versions" / version(3))  # the version in use, deleted by hand
    command = f"cd {folder} && ln -sfn versions/{version(1)} current"
    expected = (
        f"error: mnist's release is broken: {folder / 'current'} points to versions/{version(3)}, which is gone; "
        f"point it at the newest intact version, {version(1)} (`{command}`), or materialize the dataset's model_release again."
    )
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(image)
    done = predict("--dataset", "mnist", image, home=tmp_path)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (2, "", [expected])
    listed = predict("--dataset", "mnist", "--releases", home=tmp_path)
    assert listed.returncode == 2 and listed.stdout.splitlines() == [f"  {version(1)}  {version(1)}  validation 0.9  now"]
    assert listed.stderr.splitlines()[-1] == expected and len(listed.stderr.splitlines()) == 2  # the damaged version, then current
    # The fix the message gives works.
    subprocess.run(command, shell=True, check=True)
    done = predict("--dataset", "mnist", image, home=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"{image}: ") and not done.stderr
    assert release_folder.broken_current(folder) is None
