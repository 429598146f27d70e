"""The code stays within the linter's rules and format (pyproject.toml, [tool.ruff]), and the code
location loads without the ML stack (mnist_assets/executors.py says why)."""

import ast
import sys
from pathlib import Path

from processes import REPO, run_ok

RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_finds_nothing():
    run_ok([RUFF, "check", "."], timeout=300)


def test_code_is_formatted():
    run_ok([RUFF, "format", "--check", "."], timeout=300)


PRELOADED = ("torch", "fiftyone", "sklearn", "matplotlib")  # what the ML modules import at their top
HEAVY = (*PRELOADED, "umap", "open_clip")
LOADS_LIGHT = f"""
import sys
import mnist_assets.definitions
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
from mnist_assets.executors import forkserver_preload
for module in forkserver_preload():  # the forkserver skips a module it cannot import, silently
    __import__(module)
print(sorted(m for m in {PRELOADED!r} if m in sys.modules))
"""


def test_the_code_location_loads_without_the_ml_stack_and_the_forkserver_preloads_it():
    loaded = run_ok([sys.executable, "-c", LOADS_LIGHT], timeout=300)
    by_definitions, by_preload = loaded.stdout.splitlines()[-2:]
    assert by_definitions == "[]"
    assert by_preload == str(sorted(PRELOADED))


# What each part of mnist_assets.ml may import of the project (mnist_assets/ml/__init__.py draws it).
ML_LAYERS = {
    "core": set(),
    "data": {"core"},
    "store": {"core", "data"},
    "decisions": {"core", "data", "store"},
    "models": {"core", "data"},
    "quality": {"core", "data"},
    "figures": {"core", "data", "store"},
    "release": {"core", "data", "models", "quality"},
    "ingest": {"core", "data", "store", "decisions"},
}


def project_imports(path: Path) -> set[str]:
    """The modules of the project a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_assets"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mnist_assets")}
    return found


def test_ml_imports_run_one_way():
    """Each part of `mnist_assets.ml` imports only the parts below it, and nothing of the Dagster layer."""
    ml = REPO / "mnist_assets" / "ml"
    wrong = []
    for path in sorted(ml.rglob("*.py")):
        part = path.relative_to(ml).parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        assert part in ML_LAYERS, f"{path}: a part of mnist_assets.ml missing from ML_LAYERS"
        for module in project_imports(path):
            target = module.split(".")[2] if module.startswith("mnist_assets.ml.") else "(outside ml)"
            if target != part and target not in ML_LAYERS[part]:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_round_a_circle():
    """No circle of imports among the project's modules, at their top or inside functions."""
    package = REPO / "mnist_assets"
    modules = {".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path for path in package.rglob("*.py")}
    graph = {name: {module for module in project_imports(path) if module in modules and module != name} for name, path in modules.items()}
    for name, path in modules.items():  # `from mnist_assets.ml.quality import data_issues` imports the module
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                graph[name] |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules}
    circles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


def test_asset_bodies_stay_short():
    """Asset modules declare, step functions compute: no asset's body runs past 60 lines."""
    long = []
    for path in sorted((REPO / "mnist_assets" / "assets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            decorators = node.decorator_list if isinstance(node, ast.FunctionDef) else []
            if any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") in ("asset", "multi_asset") for d in decorators):
                lines = node.end_lineno - node.body[0].lineno + 1
                if lines > 60:
                    long.append(f"{path.name}:{node.name} {lines} lines")
    assert not long, long
