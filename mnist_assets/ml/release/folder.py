"""A dataset's releases on disk: one folder per release, switched as one unit, the current one and
the newest few kept.

    release/
      versions/20261205T101500Z-1a2b3c4d/model.onnx, model_card.json, model_card.md
      versions/...                        (the newest `keep_releases`, and the one in use)
      current -> versions/<the release in use>
      model.onnx -> current/model.onnx    (the paths users and predict rely on)
      model_card.json -> current/model_card.json
      model_card.md -> current/model_card.md

A release's three files are written whole and fsynced in a temporary folder, which is then renamed
into `versions/`; the switch is one atomic rename of the `current` link, so the model and its card
always change together: a crash before the switch leaves the previous release in place, after it the
new one, never a new model beside an old card. After a switch, `prune` removes the older versions
(never the one in use, nor one another process may be about to switch to). Only NumPy-free standard
library here: predict lists releases without the platform.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from mnist_assets.ml.core.files import fsync_folder, remove_abandoned_temporaries, temporary_name, write_synced

FILES = ("model.onnx", "model_card.json", "model_card.md")
VERSIONS, CURRENT = "versions", "current"
LEGACY = "legacy"  # the release a folder held before versions existed
# A version this young is never pruned: another process may have renamed it into versions/ and be
# about to switch `current` to it (the margin also covers clocks of NFS clients that disagree).
PRUNE_GRACE_SECONDS = 3600.0


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
    """Every release kept, oldest first: version, model, validation accuracy, when, which is current,
    and `problem`: "" or what is wrong with it (a card that is missing or unreadable, no model)."""
    folder = Path(folder)
    in_use = current(folder)
    rows = []
    for path in _versions(folder) or ([folder] if in_use == folder else []):
        summary, problem = _summary(path)
        current_one = in_use is not None and path.resolve() == in_use
        rows.append({"version": path.name if path != folder else LEGACY, **summary, "current": current_one, "problem": problem})
    return rows


def prune(folder: Path, keep: int) -> dict:
    """After a switch: remove the versions older than the newest `keep`, never the one `current`
    points to nor one younger than PRUNE_GRACE_SECONDS. Each is renamed to a hidden temporary name
    first (gone from every listing at once), then deleted; a version that cannot be removed is
    reported in `failed`, never raised: the release is in place already. Returns the version names
    {"kept": [...], "removed": [...], "failed": ["<version>: <why>", ...]}."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep {keep!r}: keep at least the newest release (keep_releases: 1 or more)")
    folder = Path(folder)
    link = folder / CURRENT
    versions = _versions(folder)
    if not link.is_symlink():  # never switched: nothing is known to be in use
        return {"kept": [path.name for path in versions], "removed": [], "failed": []}
    in_use = Path(os.readlink(link)).name
    kept, removed, failed = [], [], []
    for position, path in enumerate(versions):
        if path.name == in_use or position >= len(versions) - keep or _young(path):
            kept.append(path.name)
            continue
        doomed = path.with_name(temporary_name(path.name))
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            continue  # another publisher pruned it first
        except OSError as error:
            kept.append(path.name)
            failed.append(f"{path.name}: {error}")
            continue
        try:
            shutil.rmtree(doomed)
            removed.append(path.name)
        except OSError as error:  # back under its name: listed as it is, and tried again at the next release
            kept.append(path.name)
            failed.append(f"{path.name}: {error}")
            with contextlib.suppress(OSError):
                os.rename(doomed, path)
    fsync_folder(folder / VERSIONS)
    return {"kept": kept, "removed": removed, "failed": failed}


def broken_current(folder: Path) -> str | None:
    """One line saying what is wrong with `current` and how to recover, or None when it points at a
    release with its model (or the folder has no versions: never released, or released before them)."""
    folder = Path(folder)
    link = folder / CURRENT
    if link.is_symlink():
        if (link / FILES[0]).is_file():
            return None
        what = f"{link} points to {os.readlink(link)}, which " + ("has no model.onnx" if link.exists() else "is gone")
    elif _versions(folder) and not (folder / FILES[0]).is_file():
        what = f"{link} is missing"
    else:
        return None
    intact = [row["version"] for row in list_releases(folder) if not row["problem"]]
    if intact:
        fix = f"point it at the newest intact version, {intact[-1]} (`cd {folder} && ln -sfn {VERSIONS}/{intact[-1]} {CURRENT}`), "
    else:
        fix = "no intact version is kept: "
    return f"{what}; {fix}or materialize the dataset's model_release again."


def _versions(folder: Path) -> list[Path]:
    """The version folders, oldest first: `legacy`, then by name (by time); temporary ones left out."""
    try:
        found = [
            path for path in (folder / VERSIONS).iterdir() if not path.name.startswith(".") and path.is_dir() and not path.is_symlink()
        ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda path: (path.name != LEGACY, path.name))


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < PRUNE_GRACE_SECONDS  # a future time (another clock) is young too
    except FileNotFoundError:
        return False


def _summary(path: Path) -> tuple[dict, str]:
    """The release in `path` as its card says (model, validation accuracy, when), and what is wrong
    with it: "" when nothing, else one phrase naming the file."""
    summary = {"model": None, "validation_accuracy": None, "released_at": ""}
    card = path / FILES[1]
    try:
        data = json.loads(card.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        candidates = data.get("candidates", [])
        if not (isinstance(candidates, list) and all(isinstance(c, dict) for c in candidates)):
            raise TypeError("`candidates` is not a list of objects")
        accuracy = next((c.get("validation_accuracy") for c in candidates if c.get("model") == data.get("model")), None)
        summary.update(model=data.get("model"), validation_accuracy=accuracy, released_at=data.get("released_at", ""))
    except FileNotFoundError:
        return summary, f"{card} is missing"
    except UnicodeDecodeError:
        return summary, f"{card} is not text"
    except json.JSONDecodeError as error:
        return summary, f"{card} is not JSON ({error})"
    except TypeError as error:
        return summary, f"{card} is not a model card ({error})"
    except OSError as error:
        return summary, f"{card} cannot be read ({error.strerror or error})"
    if not (path / FILES[0]).is_file():
        return summary, f"{path / FILES[0]} is missing"
    return summary, ""


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
