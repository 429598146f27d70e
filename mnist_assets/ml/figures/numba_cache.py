"""UMAP's numba functions compiled once and kept on disk, not recompiled in every process.

umap-learn jit-compiles its functions on first use without numba's `cache=True`, so each Dagster
step process that projects embeddings pays the compilation again (most of a small projection's
time). Turning caching on for those dispatchers before their first call stores the machine code
under the data folder; later processes load it. numba writes cache files atomically, so
concurrent steps are safe.
"""

import importlib
from pathlib import Path

UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.sparse", "umap.spectral")

_enabled_for: set[str] = set()


def cache_umap_compilation(cache_dir: Path | str) -> int:
    """Enable numba's on-disk cache (in `cache_dir`) for umap-learn's jitted functions; returns how
    many functions it turned on (0 when already done in this process)."""
    import numba
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    cache_dir = str(Path(cache_dir).resolve())
    if cache_dir in _enabled_for:
        return 0
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = cache_dir  # read when each dispatcher's cache is created, just below
    enabled = 0
    for name in UMAP_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and isinstance(value._cache, NullCache):
                value.enable_caching()
                enabled += 1
    _enabled_for.add(cache_dir)
    return enabled
