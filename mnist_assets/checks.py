"""Asset checks as plain functions of what an asset produced.

Assets declare their checks with `check_specs` and yield these results in the
same step, so every check runs per partition with the materialization it judges.
Each function is also called directly by the tests.
"""

from __future__ import annotations

import dagster as dg
import numpy as np

# Below this many samples class fractions are too noisy to judge balance.
MIN_SAMPLES_FOR_BALANCE = 1000


def check_count(asset, count: int, expected: int, limit: int | None) -> dg.AssetCheckResult:
    """As many samples as the source holds for the split (at most `limit`)."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="sample_count",
        passed=count == expected,
        metadata={"count": count, "expected": expected, "limit": str(limit)},
    )


def check_labels_in_range(asset, labels: list[str | None], classes: list[str]) -> dg.AssetCheckResult:
    allowed = set(classes)
    bad = [label for label in labels if label not in allowed]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="labels_in_range",
        passed=not bad,
        metadata={"bad_labels": len(bad), "examples": str(sorted({str(b) for b in bad})[:5])},
    )


def check_class_balance(asset, counts: dict[str, int]) -> dg.AssetCheckResult:
    """Every class between half and one and a half times its even share (1 / number of classes)."""
    total = sum(counts.values())
    fractions = {label: count / total for label, count in counts.items()} if total else {}
    if total < MIN_SAMPLES_FOR_BALANCE:
        return dg.AssetCheckResult(
            asset_key=asset,
            check_name="class_balance",
            passed=all(counts.values()),
            metadata={"note": f"only {total} samples: checked that every class is present, not balance"},
        )
    share = 1 / len(counts)
    low, high = 0.5 * share, 1.5 * share
    off = {label: round(f, 4) for label, f in fractions.items() if not low <= f <= high}
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="class_balance",
        passed=not off,
        metadata={"min_fraction": min(fractions.values()), "max_fraction": max(fractions.values()), "off": str(off)},
    )


def check_images(asset, widths: list, heights: list, channels: list, missing: int, size: int, n_channels: int) -> dg.AssetCheckResult:
    """Every image on disk, `size` x `size` with `n_channels` channels (the declared shape)."""
    wrong = sum(1 for w, h, c in zip(widths, heights, channels) if (w, h, c) != (size, size, n_channels))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="images_match_declared_shape",
        passed=missing == 0 and wrong == 0,
        metadata={"missing_files": missing, "wrong_shape": wrong, "checked": len(widths), "expected": f"{size}x{size}x{n_channels}"},
    )


def check_finite(asset, name: str, values: np.ndarray, expected_shape: tuple) -> dg.AssetCheckResult:
    """All values finite and the array of the expected shape (None in the shape matches anything)."""
    values = np.asarray(values)
    shape_ok = values.ndim == len(expected_shape) and all(e is None or e == s for e, s in zip(expected_shape, values.shape))
    finite = bool(np.isfinite(values).all()) if values.size else True
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=f"{name}_finite",
        passed=shape_ok and finite,
        metadata={"shape": str(values.shape), "expected_shape": str(expected_shape), "all_finite": finite},
    )


def check_accuracy_gate(asset, accuracy: float, threshold: float, limited: bool) -> dg.AssetCheckResult:
    """Blocking gate: on full data the model must reach `threshold` validation accuracy."""
    if limited:
        return dg.AssetCheckResult(
            asset_key=asset,
            check_name="accuracy_gate",
            passed=True,
            metadata={
                "accuracy": accuracy,
                "threshold": threshold,
                "note": "skipped: limited run (raw_dataset ingested with a limit, or MNIST_ASSETS_EPOCHS set)",
            },
        )
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="accuracy_gate",
        passed=accuracy >= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"accuracy": accuracy, "threshold": threshold},
    )
