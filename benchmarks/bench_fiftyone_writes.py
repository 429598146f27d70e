"""Writing predictions (label, confidence, 10 logits) to FiftyOne: the project's bulk writes (pymongo,
through FiftyOne's private `_sample_collection`) against FiftyOne's public `set_values` and a
per-sample save() loop, side by side.

Bulk and `set_values` write every sample of the view; the loop runs on a slice and is scaled up
linearly to the same count (the loop's cost per sample is constant).
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

    started = time.perf_counter()
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    best = probabilities.argmax(axis=1)
    values = [
        fo.Classification(label=DIGITS[b], confidence=float(probabilities[i, b]), logits=logits[i].tolist()) for i, b in enumerate(best)
    ]
    view.set_values("bench_set_values", dict(zip(ids, values)), key_field="id")
    set_values = time.perf_counter() - started
    view._dataset.delete_sample_field("bench_set_values")

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
        "fiftyone_write_set_values_seconds": round(set_values, 2),
        "fiftyone_write_bulk_over_set_values": round(set_values / bulk, 2),  # how many times faster than the public API
    }
