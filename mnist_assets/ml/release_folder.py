"""A dataset's releases on disk: one folder per release, switched as one unit, every one kept.

    release/
      versions/20261205T101500Z-1a2b3c4d/model.onnx, model_card.json, model_card.md
      versions/...                        (every earlier release, kept)
      current -> versions/<the release in use>
      model.onnx -> current/model.onnx    (the paths users and predict rely on)
      model_card.json -> current/model_card.json
      model_card.md -> current/model_card.md

A release's three files are written whole and fsynced in a temporary folder, which is then renamed
into `versions/`; the switch is one atomic rename of the `current` link, so the model and its card
always change together: a crash before the switch leaves the previous release in place, after it the
new one, never a new model beside an old card. Only NumPy-free standard library here: predict lists
releases without the platform.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from mnist_assets.ml.files import fsync_folder, remove_abandoned_temporaries, temporary_name, write_synced

FILES = ("model.onnx", "model_card.json", "model_card.md")
VERSIONS, CURRENT = "versions", "current"
LEGACY = "legacy"  # the release a folder held before versions existed


def new_version(model_sha256: str) -> str:
    """`<UTC time>-<start of the model's SHA-256>`: sorted by name, releases are sorted by time."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{model_sha256[:8]}"


def current(folder: Path) -> Path | None:
    """The folder of the release in use (its three files), or None before the first release. Read
    only: a release written before versions existed is `folder` itself until the next promotion."""
    folder = Path(folder)
    link = folder / CURRENT
    if link.is_symlink():
        return link.resolve() if (link / FILES[0]).is_file() else None
    return folder if (folder / FILES[0]).is_file() else None


def promote(folder: Path, version: str, graph: bytes, card: dict, card_markdown: str) -> Path:
    """Make (graph, card) the release in `folder` under `version`; returns its folder."""
    folder = Path(folder)
    _adopt_legacy(folder)
    target = _write_version(
        folder, version, {FILES[0]: graph, FILES[1]: (json.dumps(card, indent=2) + "\n").encode(), FILES[2]: card_markdown.encode()}
    )
    _link(folder / CURRENT, f"{VERSIONS}/{version}")  # the switch: one rename
    _stable_links(folder)
    return target


def list_releases(folder: Path) -> list[dict]:
    """Every release kept, oldest first: version, model, validation accuracy, when, and which is current."""
    folder = Path(folder)
    in_use = current(folder)
    rows = []
    kept = sorted((folder / VERSIONS).glob("*")) if (folder / VERSIONS).is_dir() else []
    for path in kept or ([folder] if in_use == folder else []):
        if path.name.startswith(".") or not (path / FILES[1]).is_file():
            continue
        card = json.loads((path / FILES[1]).read_text())
        accuracy = next((c["validation_accuracy"] for c in card.get("candidates", []) if c.get("model") == card.get("model")), None)
        rows.append(
            {
                "version": path.name if path != folder else LEGACY,
                "model": card.get("model"),
                "validation_accuracy": accuracy,
                "released_at": card.get("released_at", ""),
                "current": in_use is not None and path.resolve() == in_use,
            }
        )
    return rows


def _write_version(folder: Path, version: str, files: dict[str, bytes]) -> Path:
    versions = folder / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(versions)
    target = versions / version
    if target.exists():
        raise FileExistsError(f"release {target} exists already; a release is never rewritten.")
    staging = versions / temporary_name(version)
    staging.mkdir()
    try:
        for name, data in files.items():
            write_synced(staging / name, data)
        fsync_folder(staging)
        os.rename(staging, target)  # all three files appear at once
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_folder(versions)
    return target


def _link(path: Path, target: str) -> None:
    """Point the symbolic link `path` at `target` (relative), replacing what is there in one rename."""
    tmp = path.with_name(temporary_name(path.name))
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    finally:
        if tmp.is_symlink():
            tmp.unlink()
    fsync_folder(path.parent)


def _stable_links(folder: Path) -> None:
    for name in FILES:
        path = folder / name
        if not (path.is_symlink() and os.readlink(path) == f"{CURRENT}/{name}"):
            _link(path, f"{CURRENT}/{name}")


def _adopt_legacy(folder: Path) -> None:
    """A release written before versions existed (plain files in `folder`) becomes the version
    `legacy`, the one in use, without a moment where the three paths disagree: its files are linked
    into `versions/legacy` first, `current` set, then each path becomes a link to the same bytes."""
    model = folder / FILES[0]
    if model.is_symlink() or not model.is_file():
        return
    if not (folder / VERSIONS / LEGACY).exists():
        _write_version(folder, LEGACY, {name: (folder / name).read_bytes() for name in FILES if (folder / name).is_file()})
    if not (folder / CURRENT).is_symlink():
        _link(folder / CURRENT, f"{VERSIONS}/{LEGACY}")
    _stable_links(folder)
    for older in folder.glob("model-*.onnx"):  # the content-named copies of that layout
        older.unlink(missing_ok=True)
