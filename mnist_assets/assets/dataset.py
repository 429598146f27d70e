"""The series' step 1: real MNIST in FiftyOne per split, and its metadata."""


import time
from pathlib import Path

import numpy as np

import dagster as dg
from mnist_assets import checks
from mnist_assets.metadata import class_counts, markdown_table, png
from mnist_assets.ml import plots
from mnist_assets.automation import follows_lineage, weekly_refresh
from mnist_assets.ml.fiftyone_store import pixel_hashes, split_fingerprint, split_view, sync_split, write_pngs
from mnist_assets.ml.mnist_source import FILES, load_mnist, split_arrays
from mnist_assets.ml.tensors import load_view_tensors
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings


def image_paths(images_dir: Path, split: str, indices: np.ndarray) -> list[Path]:
    """PNG paths named by source file and index, so the same pixels always get the same file."""
    stem = FILES["test_images" if split == "test" else "train_images"][0]
    folder = images_dir / stem
    return [folder / f"{int(index):05d}.png" for index in indices]


@dg.asset(
    partitions_def=split_partitions,
    group_name="dataset",
    kinds={"fiftyone", "python"},
    code_version="2",
    automation_condition=weekly_refresh(),
    check_specs=[
        dg.AssetCheckSpec("sample_count", asset="raw_mnist"),
        dg.AssetCheckSpec("labels_in_range", asset="raw_mnist"),
        dg.AssetCheckSpec("class_balance", asset="raw_mnist"),
    ],
)
def raw_mnist(context: dg.AssetExecutionContext, settings: MnistSettings):
    """Real MNIST, MD5-verified, as PNG files and FiftyOne samples with ground_truth and split; unchanged samples are kept."""
    split = context.partition_key
    started = time.perf_counter()
    source_dir = Path(settings.source_dir) if settings.source_dir else None
    mnist = load_mnist(source_dir, settings.downloads_dir)  # verifies before anything is written
    images, labels, indices = split_arrays(mnist, split, settings.limit)
    context.log.info(f"{split}: {len(labels)} samples from {mnist.source}")

    paths = image_paths(settings.images_dir, split, indices)
    written = write_pngs(images, paths)
    context.log.info(f"{split}: wrote {written} new PNG files ({len(paths) - written} already there)")
    dataset = settings.dataset()
    hashes = pixel_hashes(images)
    changes = sync_split(dataset, split, paths, labels, indices, hashes)
    count = changes["count"]
    context.log.info(
        f"{split}: {count} samples in dataset {dataset.name!r} (kept {changes['kept']}, replaced {changes['replaced']}, "
        f"added {changes['added']}, removed {changes['removed']})"
    )

    stored_labels = split_view(dataset, split).values("ground_truth.label")
    counts = class_counts(stored_labels)
    examples = [int(np.flatnonzero(labels == digit)[0]) for digit in range(10) if (labels == digit).any()]
    yield dg.MaterializeResult(
        # Same samples, labels and pixels give the same data version, so the UI marks downstream
        # assets stale only when the split's content really changed.
        data_version=dg.DataVersion(split_fingerprint(indices, labels, hashes)),
        metadata={
            "count": count,
            **{f"samples_{change}": changes[change] for change in ("kept", "replaced", "added", "removed")},
            "source": mnist.source,
            "dataset": dataset.name,
            "images_dir": dg.MetadataValue.path(str(paths[0].parent) if paths else str(settings.images_dir)),
            "new_png_files": written,
            "class_counts": markdown_table([counts]),
            "examples": png(plots.image_grid(images[examples], [f"{labels[i]} (#{indices[i]})" for i in examples])),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    yield checks.check_count("raw_mnist", split, count, settings.limit)
    yield checks.check_labels_in_range("raw_mnist", stored_labels)
    yield checks.check_class_balance("raw_mnist", counts)


@dg.asset(
    partitions_def=split_partitions,
    deps=[raw_mnist],
    group_name="dataset",
    kinds={"fiftyone", "python"},
    code_version="1",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("images_28x28_grayscale", asset="mnist_metadata")],
)
def mnist_metadata(context: dg.AssetExecutionContext, settings: MnistSettings):
    """FiftyOne image metadata, file-size and pixel statistics, and class counts of a split."""
    split = context.partition_key
    dataset = settings.dataset()
    view = split_view(dataset, split)
    view.compute_metadata(num_workers=4, progress=False)
    sizes, widths, heights, channels, labels = view.values(
        ["metadata.size_bytes", "metadata.width", "metadata.height", "metadata.num_channels", "ground_truth.label"]
    )
    # Pixels through the tensor bridge: this also warms the cache training reads from.
    tensors = load_view_tensors(view, settings.tensor_cache_dir)
    pixels = tensors.images.float() / 255.0
    missing = sum(size is None for size in sizes)
    sizes_array = np.array([s for s in sizes if s is not None], dtype=np.float64)
    counts = class_counts(labels)
    yield dg.MaterializeResult(
        metadata={
            "count": len(view),
            "size_bytes_min": int(sizes_array.min()),
            "size_bytes_max": int(sizes_array.max()),
            "size_bytes_mean": round(float(sizes_array.mean()), 1),
            "size_bytes_std": round(float(sizes_array.std()), 1),
            "pixel_mean": round(float(pixels.mean()), 4),
            "pixel_std": round(float(pixels.std()), 4),
            "class_counts": markdown_table([counts]),
            "class_chart": png(plots.bar_chart(list(counts), list(counts.values()), f"{split}: samples per class")),
        }
    )
    yield checks.check_images("mnist_metadata", widths, heights, channels, missing)
