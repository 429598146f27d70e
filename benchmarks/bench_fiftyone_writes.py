"""Writing predictions (label, confidence, 10 logits) to FiftyOne: bulk vs a per-sample save() loop.

Bulk writes every sample of the view; the loop runs on a slice and is scaled
up linearly to the same count (the loop's cost per sample is constant).
"""

import time

import fiftyone as fo
import numpy as np

from mnist_assets.ml.data.dataset_spec import DIGITS
from mnist_assets.ml.store.fiftyone_store import write_classifications


def run(view, loop_samples: int = 2000) -> dict:
    count = len(view)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(count, 10)).astype(np.float32)
    ids = view.values("id")
    started = time.perf_counter()
    write_classifications(view, "bench_predictions", logits, ids, DIGITS)
    bulk = time.perf_counter() - started

    subset = view.limit(loop_samples)
    started = time.perf_counter()
    for i, sample in enumerate(subset.iter_samples(progress=False)):
        probabilities = np.exp(logits[i]) / np.exp(logits[i]).sum()
        best = int(probabilities.argmax())
        sample["bench_predictions"] = fo.Classification(
            label=DIGITS[best], confidence=float(probabilities[best]), logits=logits[i].tolist()
        )
        sample.save()
    loop = (time.perf_counter() - started) * count / min(loop_samples, count)
    view._dataset.delete_sample_field("bench_predictions")
    return {
        "fiftyone_write_samples": count,
        "fiftyone_write_bulk_seconds": round(bulk, 2),
        "fiftyone_write_loop_seconds_scaled": round(loop, 2),
        "fiftyone_write_bulk_speedup": round(loop / bulk, 2),
    }
