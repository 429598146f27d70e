"""The pipeline's bulk writes store exactly what FiftyOne's own set_values stores."""

import time

import fiftyone as fo
import numpy as np
import pytest
from scipy.special import softmax

from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.store import bulk_writes
from mnist_assets.ml.store.fiftyone_store import read_vectors, write_classifications, write_floats, write_vectors

COUNT = 500


def stored(dataset, field: str) -> list:
    """The raw database documents of a field, without the generated label ids."""
    documents = [doc[field] for doc in dataset._sample_collection.find({}, {field: 1}).sort("_id", 1)]
    return [{k: v for k, v in doc.items() if k != "_id"} if isinstance(doc, dict) else doc for doc in documents]


@pytest.mark.parametrize("chunk", [10_000, 128])  # one bulk update, and several sent while the next is built
def test_bulk_writes_read_back_exactly_like_set_values(make_settings, monkeypatch, chunk):
    monkeypatch.setattr(bulk_writes, "CHUNK", chunk)
    dataset = make_settings().store("mnist").dataset()
    dataset.add_samples([fo.Sample(filepath=f"/nowhere/{i}.png", split="test") for i in range(COUNT)])
    ids = dataset.values("id")
    logits = np.random.default_rng(0).normal(size=(COUNT, 10)) * 4
    classes = [str(d) for d in range(10)]

    # FiftyOne's way: Classification objects through set_values.
    probabilities = softmax(logits, axis=1)
    dataset.add_sample_field("reference", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    dataset.set_values(
        "reference",
        [
            fo.Classification(label=classes[p.argmax()], confidence=float(p.max()), logits=row.tolist())
            for p, row in zip(probabilities, logits)
        ],
    )
    dataset.add_sample_field("reference_score", fo.FloatField)
    dataset.set_values("reference_score", probabilities[:, 0].tolist())
    embeddings = np.random.default_rng(1).normal(size=(COUNT, 84)).astype(np.float32)
    dataset.add_sample_field("reference_vector", fo.VectorField)
    dataset.set_values("reference_vector", list(embeddings))
    before = time.time()
    write_classifications(dataset.view(), "bulk", logits, ids, classes)
    write_floats(dataset.view(), {"bulk_score": probabilities[:, 0], "bulk_score_2": probabilities[:, 1]}, ids)
    write_vectors(dataset.view(), "bulk_vector", embeddings, ids)

    assert stored(dataset, "bulk") == stored(dataset, "reference")
    assert stored(dataset, "bulk_score") == stored(dataset, "reference_score")
    assert dataset.values("bulk_score_2") == probabilities[:, 1].tolist()
    assert stored(dataset, "bulk_vector") == stored(dataset, "reference_vector")
    assert np.array_equal(np.stack(dataset.values("bulk_vector")), embeddings)
    assert dataset.values("bulk.label") == dataset.values("reference.label")
    assert dataset.values("bulk.confidence") == dataset.values("reference.confidence")
    assert np.array_equal(np.stack(dataset.values("bulk.logits")), np.stack(dataset.values("reference.logits")))
    assert isinstance(dataset.first()["bulk"], fo.Classification)
    assert dataset.get_field_schema()["bulk"].document_type is fo.Classification
    assert len(dataset.match(fo.ViewField("bulk.label") == "3")) == dataset.values("bulk.label").count("3")
    modified = dataset.values("last_modified_at")
    assert all(stamp.timestamp() >= before - 1 for stamp in modified)  # last_modified_at moves, as with set_values
    sample = dataset.first()  # a sample held in memory sees the new values after another bulk write
    write_floats(dataset.view(), {"bulk_score": np.zeros(COUNT)}, ids)
    assert sample["bulk_score"] == 0.0


def test_vectors_read_in_bulk_equal_fiftyone_values(make_settings):
    """read_vectors decodes the stored bytes at once; it must give what FiftyOne's own `values`
    gives, for vectors FiftyOne wrote and for logits the bulk writes wrote, in the view's order."""
    dataset = make_settings().store("mnist").dataset()
    dataset.add_samples([fo.Sample(filepath=f"/nowhere/{i}.png", split="test") for i in range(COUNT)])
    ids = dataset.values("id")
    embeddings = np.random.default_rng(1).normal(size=(COUNT, 84)).astype(np.float32)
    dataset.add_sample_field("reference_vector", fo.VectorField)
    dataset.set_values("reference_vector", list(embeddings))
    logits = np.random.default_rng(0).normal(size=(COUNT, 10)) * 4
    write_classifications(dataset.view(), "bulk", logits, ids, [str(d) for d in range(10)])

    assert np.array_equal(read_vectors(dataset.view(), "reference_vector"), embeddings)
    assert np.array_equal(read_vectors(dataset.view(), "bulk.logits"), np.stack(dataset.values("bulk.logits")).astype(np.float32))
    reordered = dataset.skip(7).limit(100).sort_by("filepath", reverse=True)
    assert np.array_equal(read_vectors(reordered, "reference_vector"), np.stack(reordered.values("reference_vector")))
    sample = dataset.first()  # rows of mixed types: decoded row by row, still right
    sample["reference_vector"] = np.arange(84, dtype=np.float64)
    sample.save()
    mixed = bulk_writes.vectors_from_stored(dataset.limit(2).values("reference_vector", _raw=True))
    assert np.array_equal(mixed, np.stack([np.arange(84), embeddings[1]]))
    with pytest.raises(MissingInputError, match="1 samples have no 'absent'"):
        dataset.add_sample_field("absent", fo.VectorField)
        read_vectors(dataset.limit(1), "absent")
