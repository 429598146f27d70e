"""Which `defs.yaml` declares which dataset: found by the `name` it declares, never by its folder.

A folder `defs/clothes/` may declare `name: my_clothes` (`dg scaffold` makes that easy); the asset
keys, the FiftyOne dataset, the review log and the release all follow the declared name, so every
command that takes a dataset name (`review import`, `predict --dataset`, `make app DATASET=`) looks
it up here. Standard library and PyYAML only: `predict` imports it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DEFS_FOLDER = Path(__file__).resolve().parent / "defs"


class UnknownDataset(ValueError):
    """No declaration declares the name asked for."""


def declared_name(path: Path) -> str | None:
    """The `name` a defs.yaml declares, None when it is missing or unreadable (the loader says why)."""
    try:
        name = ((yaml.safe_load(path.read_text()) or {}).get("attributes") or {}).get("name")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def colliding(names: dict[Path, str | None]) -> dict[Path, Path]:
    """Each folder whose declared name another folder declares too, or one FiftyOne cannot tell from
    it (`fiftyone_slugs`), -> the folder that keeps the name: the one named after its dataset (a copy
    of mnist/ that kept `name: mnist` does not take MNIST down), else the first in name order."""
    groups: list[tuple[set[str], list[Path]]] = []  # slugs taken -> the folders taking them
    for folder, name in sorted(names.items()):
        if not name:
            continue
        slugs = fiftyone_slugs(name)
        group = next((group for group in groups if group[0] & slugs), None)
        if group is None:
            groups.append((set(slugs), [folder]))
        else:
            group[0].update(slugs)
            group[1].append(folder)
    refused = {}
    for _, folders in groups:
        kept = next((folder for folder in folders if folder.name == names[folder]), folders[0])
        refused.update({folder: kept for folder in folders if folder != kept})
    return refused


def declarations(folder: Path | None = None) -> dict[str, Path]:
    """Declared name -> its defs.yaml, for every declaration whose name can be read and is its own."""
    names = {path.parent: declared_name(path) for path in sorted((folder or DEFS_FOLDER).glob("*/defs.yaml"))}
    refused = colliding(names)
    return {name: entry / "defs.yaml" for entry, name in names.items() if name and entry not in refused}


def declaration_path(name: str, folder: Path | None = None) -> Path:
    """The defs.yaml that declares `name`; UnknownDataset listing the declared names (and, when
    `name` is a folder's name, the name that folder declares) otherwise."""
    folder = folder or DEFS_FOLDER
    found = declarations(folder)
    if name in found:
        return found[name]
    hint = ""
    inside = folder / name / "defs.yaml" if re.fullmatch(r"[\w-]+", name or "") else None
    if inside is not None and inside.is_file() and declared_name(inside):
        hint = f" (the folder {name}/ declares the dataset {declared_name(inside)!r}: use that name)"
    raise UnknownDataset(f"no dataset {name!r} is declared{hint}; declared: {', '.join(sorted(found)) or 'none'}")


def fiftyone_slugs(name: str) -> set[str]:
    """The FiftyOne slugs a dataset takes: its dataset and `<name>-augmented`. FiftyOne refuses a
    dataset whose slug another has (`fiftyone.core.utils.to_slug`: lower case, `_` and `-` alike,
    runs of them one `-`), so `MNIST` collides with `mnist`, and `mnist_augmented` with mnist's
    augmented set. Written out here because importing FiftyOne to ask costs seconds at every load;
    tests/test_datasets.py checks it against FiftyOne's own."""
    return {slug(name), slug(f"{name}-augmented")}


def slug(text: str) -> str:
    """FiftyOne's `to_slug` for what a dataset name may hold (letters, digits, `_`, `-`)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "", text.lower().replace("_", "-"))).strip("-")


def one_line_error(error: BaseException) -> str:
    """The user's part of an error in one line: pydantic's messages without their boilerplate, a
    YAML error with its line, the innermost cause of Dagster's component-tree wrapper."""
    from pydantic import ValidationError

    while error.__cause__ is not None and type(error).__name__ == "ComponentTreeException":
        error = error.__cause__
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            message = item["msg"].removeprefix("Value error, ")
            where = ".".join(str(part) for part in item.get("loc", ()))
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts).rstrip(" .")
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"not valid YAML: {error.problem or error.context}{at}"
    text = " ".join(str(error).split())
    if not isinstance(error, ValueError) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text.rstrip(" .") if len(text) <= 500 else text[:497] + "..."
