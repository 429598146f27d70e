"""UMAP's numba functions compiled once and kept on disk, not recompiled in every process.

umap-learn jit-compiles its functions on first use without numba's `cache=True`, so each Dagster
step process that projects embeddings pays the compilation again (most of a small projection's
time). Turning caching on for those dispatchers before their first call stores the machine code
under the data folder; later processes load it. numba writes cache files atomically, so
concurrent steps are safe; and the first process to find the folder cold compiles (a tiny projection)
while the others wait for it and then load its code: the three partitions of a backfill, or the
test suite's processes, each paid about 25 s of CPU compiling the same functions side by side.
"""

import importlib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.sparse", "umap.spectral")

_enabled_for: set[str] = set()


def cache_umap_compilation(cache_dir: Path | str) -> int:
    """Enable numba's on-disk cache (in `cache_dir`) for umap-learn's jitted functions, compiling them
    once for every process that shares the folder; returns how many functions it turned on (0 when
    already done in this process)."""
    import numba

    cache_dir = str(Path(cache_dir).resolve())
    if cache_dir in _enabled_for:
        return 0
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = cache_dir  # read when each dispatcher's cache is created, just below
    return compile_once(
        Path(cache_dir) / f"compiled-umap-{version('umap-learn')}-numba-{numba.__version__}",
        before=lambda: _enable(cache_dir),
        compile=_compile_common_path,
    )


def compile_once(marker: Path, before: Callable[[], T], compile: Callable[[], None]) -> T:
    """`before()` (its value is returned), then `compile()` unless `marker` says some process did: the
    first process to find it missing compiles under a lock beside it while the others wait, then they
    only run `before`."""
    from filelock import FileLock

    if marker.exists():
        return before()
    with FileLock(str(marker.parent / ".compiling.lock")):
        result = before()
        if not marker.exists():
            compile()
            marker.touch()
    return result


def _enable(cache_dir: str) -> int:
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    enabled = 0
    for name in UMAP_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and isinstance(value._cache, NullCache):
                value.enable_caching()
                enabled += 1
    _enabled_for.add(cache_dir)
    return enabled


def _compile_common_path() -> None:
    """What a projection compiles, on a few random points: float32 embeddings (as the pipeline stores
    them), a seeded UMAP (compute_projection's), its exact neighbours (fewer than 4,096 points) and
    a transform of new points."""
    import numpy as np
    import umap

    points = np.random.default_rng(0).random((100, 16), dtype=np.float32)
    reducer = umap.UMAP(n_components=2, random_state=0, n_epochs=20).fit(points)
    reducer.transform(points[:10])
