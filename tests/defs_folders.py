"""Defs folders that tests build beside the project's own, and MNIST's shipped declaration to copy."""

from processes import REPO

MNIST_YAML = (REPO / "mnist_assets" / "defs" / "mnist" / "defs.yaml").read_text()


def defs_package(root, package: str, declarations: dict[str, str]):
    """A defs folder `root/<package>/defs` (importable once `root` is on sys.path): one sub-folder per
    entry of `declarations`, holding that defs.yaml text."""
    folder = root / package / "defs"
    folder.mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    for name, text in declarations.items():
        (folder / name).mkdir()
        (folder / name / "defs.yaml").write_text(text)
    return folder
