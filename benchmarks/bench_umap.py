"""UMAP's fixed cost: a projection in a fresh process, first with an empty numba cache, then later.

Every Dagster step is a fresh process, so without a cache each of a run's six UMAPs compiles
umap-learn's numba functions again. Each measurement here is a new process projecting the same
2,000 x 64 embeddings (small, so the fixed cost shows) through `mnist_assets.ml.figures.numba_cache`, timed inside it (import excluded).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
import numpy as np
from mnist_assets.ml.figures.numba_cache import cache_umap_compilation
cache_umap_compilation(sys.argv[1])
import umap
points = np.random.default_rng(0).normal(size=(2000, 64)).astype(np.float32)
started = time.perf_counter()
umap.UMAP(n_components=2, random_state=51).fit_transform(points)
print(json.dumps(time.perf_counter() - started))
"""


def _projection_seconds(cache_dir: Path) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, str(cache_dir)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(work: Path, later_runs: int = 2) -> dict:
    cache_dir = work / "numba_cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    first = _projection_seconds(cache_dir)
    later = min(_projection_seconds(cache_dir) for _ in range(later_runs))
    return {"umap_seconds_first": round(first, 2), "umap_seconds_later": round(later, 2), "umap_first_over_later": round(first / later, 2)}


if __name__ == "__main__":
    print(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/bench_umap")))
