"""One pymongo bulk update per field, for values FiftyOne would otherwise serialize one by one.

`set_values` spends most of its time turning each value into its database form (a Classification
object to a dict, with validation hooks), not in the database: for 70,000 predictions it is about
8x a per-sample `save()` loop, and the same update with documents built directly as dicts about
30x. The documents written here are exactly what `set_values` writes (tests/test_bulk_writes.py
reads both back through FiftyOne), including `last_modified_at`.
"""

import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import islice

import numpy as np
from bson import Binary, ObjectId
from fiftyone.core.utils import serialize_numpy_array
from pymongo import UpdateOne

CHUNK = 10_000


def stored_vectors(matrix: np.ndarray) -> Iterator[Binary]:
    """Each row as a VectorField value in its stored form: FiftyOne's zlib-compressed .npy bytes
    (`serialize_numpy_array`). Rows share one .npy header, so it is written once, not per row."""
    matrix = np.ascontiguousarray(matrix)
    if len(matrix) == 0:
        return
    header = zlib.decompress(serialize_numpy_array(matrix[0]))[: -matrix[0].nbytes]
    for row in matrix:
        yield Binary(zlib.compress(header + row.tobytes()))


def classification_documents(labels: list[str], confidences: np.ndarray, logits: np.ndarray) -> Iterator[dict]:
    """fo.Classification(label, confidence, logits) in its stored form, one per sample."""
    confidences = np.asarray(confidences, dtype=np.float64).tolist()
    for label, confidence, row in zip(labels, confidences, stored_vectors(np.asarray(logits, dtype=np.float64))):
        yield {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": label, "confidence": confidence, "logits": row}


def set_field(dataset, field: str, sample_ids: list[str], values: Iterable) -> None:
    """Set `field` of each sample (by id) to its value, already in stored form: bulk updates of
    CHUNK samples, each sent while the next is built (pymongo waits on the database without the
    GIL). The field must be declared on the dataset first."""
    import fiftyone.core.sample as fos

    now = datetime.utcnow()  # naive UTC, as FiftyOne stores last_modified_at
    pairs = zip(sample_ids, values)
    collection = dataset._sample_collection
    with ThreadPoolExecutor(max_workers=1) as writer:
        sent = []
        while chunk := list(islice(pairs, CHUNK)):
            operations = [UpdateOne({"_id": ObjectId(i)}, {"$set": {field: value, "last_modified_at": now}}) for i, value in chunk]
            sent.append(writer.submit(collection.bulk_write, operations, ordered=False))
        for write in sent:
            write.result()
    fos.Sample._reload_docs(dataset._sample_collection_name, sample_ids=sample_ids)  # samples held in memory
