"""Every dataset declaration of the defs folder, each loaded on its own, so that one broken
`defs.yaml` (a folder that does not exist, a YAML or attribute error, a name another folder
already declares) cannot take the other datasets down.

Each entry of the folder goes through Dagster's own component loader by itself (`dg.load_defs` on
that sub-folder: the same templating and checks as loading the whole folder); an entry that does
not load becomes a `BrokenDeclaration` (its file, the dataset it declares and the error in one
line) and an unpartitioned placeholder asset `<name>/declaration_error` whose description says
what is wrong and whose materialization fails with it, so the UI shows it beside the datasets that
load. `mnist_assets.definitions` refuses to load at all under `dg check defs` (Dagster sets
`DAGSTER_IS_DEFS_VALIDATION_CLI` there), naming every broken declaration.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import dagster as dg

from mnist_assets.declared import colliding, declared_name, one_line_error
from mnist_assets.ml.core.environment import REPO_ROOT
from mnist_assets.ml.data.dataset_spec import NAME

PLACEHOLDER = "declaration_error"  # the placeholder asset's key under `<name>/`
PLACEHOLDER_TAG = "mnist_assets/declaration_error"  # tags the placeholders: `make run` leaves them out
GROUP = "broken_declarations"
FIX = "fix the file (`dg check defs` checks it); the other datasets load and run meanwhile"


@dataclass(frozen=True)
class BrokenDeclaration:
    """A declaration that does not load: its file, the dataset it declares (the folder's name when
    its own is unreadable), the error in one line, its entry of the defs folder (the folder's name),
    and the key of its placeholder asset."""

    path: Path
    name: str
    error: str
    folder: str
    key: dg.AssetKey = field(compare=False)

    @property
    def shown_path(self) -> str:
        return _shown(self.path)

    def __str__(self) -> str:
        return f"{self.shown_path} (dataset {self.name!r}): {self.error}"


class BrokenDeclarationsError(ValueError):
    """One or more declarations do not load (raised only where a refusal is wanted: `dg check defs`)."""

    def __init__(self, broken: list[BrokenDeclaration]):
        self.broken = list(broken)
        lines = "\n".join(f"  {item}" for item in self.broken)
        super().__init__(
            f"{len(self.broken)} dataset declaration(s) do not load:\n{lines}\n"
            f"Fix them; until then `dagster dev`, the UI and `make run` load the other datasets and show each of these as "
            f"`<name>/{PLACEHOLDER}`."
        )


@dataclass(frozen=True)
class Declarations:
    """What the defs folder declares: the Definitions of every dataset that loads (and a placeholder
    asset per broken one), and the broken ones."""

    defs: dg.Definitions
    broken: list[BrokenDeclaration]


def load_declarations(defs_module: ModuleType | None = None, project_root: Path = REPO_ROOT) -> Declarations:
    """Load every sub-folder of `defs_module` (default `mnist_assets.defs`) on its own."""
    if defs_module is None:
        import mnist_assets.defs as defs_module
    folder = Path(defs_module.__path__[0])
    entries = sorted(entry for entry in folder.iterdir() if not entry.name.startswith(("_", ".")))
    names = {entry: _declared_name(entry / "defs.yaml") for entry in entries if entry.is_dir()}
    duplicates = _duplicates(names)
    loaded, broken = [], []
    for entry in entries:
        if not entry.is_dir():
            if entry.suffix in (".py", ".yaml", ".yml"):
                error = f"every dataset is a folder with a defs.yaml: move it to {_shown(folder)}/<name>/"
                broken.append(_broken(entry, entry.stem, error, entry.stem, broken))
            continue
        declaration = entry / "defs.yaml"
        shown = declaration if declaration.exists() else entry
        if entry in duplicates:
            # under its folder's name: the dataset's own name belongs to the declaration that loads
            broken.append(_broken(shown, names[entry] or entry.name, duplicates[entry], entry.name, broken, prefix=entry.name))
            continue
        try:
            module = importlib.import_module(f"{defs_module.__name__}.{entry.name}")
            loaded.append(_without_component_tree(dg.load_defs(module, project_root=project_root)))
        except Exception as error:  # any error of one declaration is that declaration's, not the location's
            broken.append(_broken(shown, names[entry] or entry.name, one_line_error(error), entry.name, broken))
    placeholders = [_placeholder(item) for item in broken]
    return Declarations(dg.Definitions.merge(*loaded, dg.Definitions(assets=placeholders)), broken)


def _declared_name(path: Path) -> str | None:
    """The `name` a defs.yaml declares, None when it is missing, unreadable or not a name (the loader says why)."""
    name = declared_name(path)
    return name if name and NAME.match(name) else None


def _duplicates(names: dict[Path, str | None]) -> dict[Path, str]:
    """Folders that declare a name another folder declares too, or one that FiftyOne cannot tell
    from it (`MNIST` beside `mnist`, `mnist_augmented` beside mnist's augmented set), with the error
    to report; which folder keeps the name: `declared.colliding`."""
    refused = {}
    for entry, kept in colliding(names).items():
        if names[entry] == names[kept]:
            why = f"declares the dataset {names[entry]!r}, which {_shown(kept / 'defs.yaml')} declares too"
        else:
            why = (
                f"declares the dataset {names[entry]!r}, which FiftyOne cannot tell from {names[kept]!r} of "
                f"{_shown(kept / 'defs.yaml')} (it compares names in lower case, '_' as '-', and each has a `-augmented` set)"
            )
        refused[entry] = f"{why}; give it another `name` (it is the asset key prefix, the FiftyOne dataset and the data folder)"
    return refused


def _broken(
    path: Path, name: str, error: str, folder: str, earlier: list[BrokenDeclaration], prefix: str | None = None
) -> BrokenDeclaration:
    taken = {item.key for item in earlier}
    prefix = _key_part(prefix or name)
    key = dg.AssetKey([prefix, PLACEHOLDER])
    if key in taken:  # two broken declarations of one name: tell them apart by their folders
        key = dg.AssetKey([prefix, f"{PLACEHOLDER}_{_key_part(folder)}"])
    return BrokenDeclaration(path=path, name=name, error=error, folder=folder, key=key)


def _key_part(text: str) -> str:
    return re.sub(r"\W", "_", text)


def _placeholder(broken: BrokenDeclaration) -> dg.AssetsDefinition:
    message = f"{broken.shown_path} does not load: {broken.error}"

    @dg.asset(
        key=broken.key,
        group_name=GROUP,
        description=f"BROKEN DECLARATION: {message}. Its dataset has no other asset until then: {FIX}.",
        metadata={"declaration": dg.MetadataValue.path(str(broken.path)), "error": broken.error},
        tags={PLACEHOLDER_TAG: "true"},
    )
    def placeholder() -> None:
        raise dg.Failure(description=f"{message}; {FIX}.", metadata={"declaration": dg.MetadataValue.path(str(broken.path))})

    return placeholder


def _without_component_tree(defs: dg.Definitions) -> dg.Definitions:
    """The Definitions as they are, less the component tree (Dagster merges at most one, and each
    sub-folder loads as a tree of its own; no part of the UI reads it)."""
    return dg.Definitions(
        assets=defs.assets,
        schedules=defs.schedules,
        sensors=defs.sensors,
        jobs=defs.jobs,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
        asset_checks=defs.asset_checks,
        metadata=defs.metadata,
    )


def _shown(path: Path) -> str:
    """A path relative to the project when it is inside it (as users see their files)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
