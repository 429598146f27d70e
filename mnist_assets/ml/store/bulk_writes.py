"""FiftyOne's stored forms, written and read in bulk: pymongo bulk updates (several fields of a
sample in one update) for values FiftyOne would otherwise serialize one by one, and vectors decoded
from their stored bytes at once.

`set_values` spends most of its time turning each value into its database form (a Classification
object to a dict, with validation hooks), not in the database: for 70,000 predictions it is about
8x a per-sample `save()` loop, and the same update with documents built directly as dicts about
30x. The documents written here are exactly what `set_values` writes (tests/test_bulk_writes.py
reads both back through FiftyOne), including `last_modified_at`.
"""

import io
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import islice, repeat

import numpy as np
from bson import Binary, ObjectId
from fiftyone.core.utils import deserialize_numpy_array, serialize_numpy_array
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


def vectors_from_stored(stored: list[bytes]) -> np.ndarray:
    """The rows `stored_vectors` (or FiftyOne) wrote, as one [N, D] matrix: each row decompressed,
    then all payloads read with one `frombuffer` when they share the first row's .npy header
    (FiftyOne's `deserialize_numpy_array` parses the header of every row: 2.4 s for 51,000 logits)."""
    if not stored:
        return np.zeros((0, 0), dtype=np.float32)
    raw = [zlib.decompress(value) for value in stored]
    with io.BytesIO(raw[0]) as first:
        read_header = (
            np.lib.format.read_array_header_1_0 if np.lib.format.read_magic(first) == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(first)
        header_size = first.tell()
    header = raw[0][:header_size]
    if len(shape) != 1 or fortran_order or any(row[:header_size] != header for row in raw):
        return np.stack([deserialize_numpy_array(value) for value in stored])  # mixed shapes or types
    return np.frombuffer(b"".join(row[header_size:] for row in raw), dtype=dtype).reshape(len(raw), shape[0])


def classification_document(label: str, **attributes) -> dict:
    """fo.Classification(label, **attributes) in its stored form."""
    return {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": label, **attributes}


def classification_documents(labels: list[str], confidences: np.ndarray, logits: np.ndarray) -> Iterator[dict]:
    """fo.Classification(label, confidence, logits) in its stored form, one per sample."""
    confidences = np.asarray(confidences, dtype=np.float64).tolist()
    for label, confidence, row in zip(labels, confidences, stored_vectors(np.asarray(logits, dtype=np.float64))):
        yield classification_document(label, confidence=confidence, logits=row)


def set_fields(dataset, sample_ids: list[str], columns: dict[str, Iterable], where: dict[str, Iterable] | None = None) -> int:
    """Set each field of `columns` of each sample (by id) to its value, already in stored form, all
    fields in one update per sample: bulk updates of CHUNK samples, each sent while the next is
    built (pymongo waits on the database without the GIL). The fields must be declared on the
    dataset first. Returns how many samples were updated.

    Without `where`, every sample must still exist: a sample removed meanwhile (a concurrent
    re-ingest) would silently lose its values, so that raises. With `where` (field -> each sample's
    expected current value), a sample is updated only if it still holds those values (compare and
    set: a person's edit made since it was read is never overwritten), and mismatches are expected.
    """
    import fiftyone.core.sample as fos

    sample_ids = list(sample_ids)
    now = datetime.utcnow()  # naive UTC, as FiftyOne stores last_modified_at
    conditions = zip(*where.values()) if where else repeat(())
    rows = zip(sample_ids, conditions, *columns.values())
    collection = dataset._sample_collection
    with ThreadPoolExecutor(max_workers=1) as writer:
        sent = []
        while chunk := list(islice(rows, CHUNK)):
            operations = [
                UpdateOne(
                    {"_id": ObjectId(i), **dict(zip(where or {}, expected))},
                    {"$set": {**dict(zip(columns, values)), "last_modified_at": now}},
                )
                for i, expected, *values in chunk
            ]
            sent.append(writer.submit(collection.bulk_write, operations, ordered=False))
        matched = sum(write.result().matched_count for write in sent)
    fos.Sample._reload_docs(dataset._sample_collection_name, sample_ids=sample_ids)  # samples held in memory
    if where is None and matched < len(sample_ids):
        raise StaleWriteError(
            f"{len(sample_ids) - matched} of {len(sample_ids)} samples of dataset {dataset.name!r} were removed while "
            f"{', '.join(columns)} was written (a concurrent re-ingest?); run the step again."
        )
    return matched


class StaleWriteError(RuntimeError):
    """Samples vanished while their fields were written."""
