"""Asset checks as plain functions of what an asset produced.

Assets declare their checks with `check_specs` and yield these results in the
same step, so every check runs per partition with the materialization it judges.
Each function is also called directly by the tests.
"""

from __future__ import annotations

import numpy as np

import dagster as dg

FULL_SPLIT_SIZES = {"train": 51000, "validation": 9000, "test": 10000}
# Below this many samples class fractions are too noisy to judge balance.
MIN_SAMPLES_FOR_BALANCE = 1000


def expected_count(split: str, limit: int | None) -> int:
    full = FULL_SPLIT_SIZES[split]
    return full if limit is None else min(limit, full)


def check_count(asset: str, split: str, count: int, limit: int | None) -> dg.AssetCheckResult:
    expected = expected_count(split, limit)
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="sample_count",
        passed=count == expected,
        metadata={"count": count, "expected": expected, "limit": str(limit)},
    )


def check_labels_in_range(asset: str, labels: list[str | None]) -> dg.AssetCheckResult:
    allowed = {str(d) for d in range(10)}
    bad = [label for label in labels if label not in allowed]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="labels_in_range",
        passed=not bad,
        metadata={"bad_labels": len(bad), "examples": str(sorted({str(b) for b in bad})[:5])},
    )


def check_class_balance(asset: str, counts: dict[str, int]) -> dg.AssetCheckResult:
    """Every class between half and one and a half times its even share."""
    total = sum(counts.values())
    fractions = {label: count / total for label, count in counts.items()} if total else {}
    if total < MIN_SAMPLES_FOR_BALANCE:
        return dg.AssetCheckResult(
            asset_key=asset,
            check_name="class_balance",
            passed=all(counts.values()),
            metadata={"note": f"only {total} samples: checked that every class is present, not balance"},
        )
    low, high = 0.05, 0.15
    off = {label: round(f, 4) for label, f in fractions.items() if not low <= f <= high}
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="class_balance",
        passed=not off,
        metadata={"min_fraction": min(fractions.values()), "max_fraction": max(fractions.values()), "off": str(off)},
    )


def check_images(asset: str, widths: list, heights: list, channels: list, missing: int) -> dg.AssetCheckResult:
    """Every image on disk and 28x28 with one channel."""
    wrong = sum(1 for w, h, c in zip(widths, heights, channels) if (w, h, c) != (28, 28, 1))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="images_28x28_grayscale",
        passed=missing == 0 and wrong == 0,
        metadata={"missing_files": missing, "wrong_shape": wrong, "checked": len(widths)},
    )


def check_finite(asset: str, name: str, values: np.ndarray, expected_shape: tuple) -> dg.AssetCheckResult:
    """All values finite and the array of the expected shape (None in the shape matches anything)."""
    values = np.asarray(values)
    shape_ok = values.ndim == len(expected_shape) and all(
        e is None or e == s for e, s in zip(expected_shape, values.shape)
    )
    finite = bool(np.isfinite(values).all()) if values.size else True
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=f"{name}_finite",
        passed=shape_ok and finite,
        metadata={"shape": str(values.shape), "expected_shape": str(expected_shape), "all_finite": finite},
    )


def check_accuracy_gate(
    asset: str, accuracy: float, threshold: float, limited: bool
) -> dg.AssetCheckResult:
    """Blocking gate: on full data the model must reach `threshold` validation accuracy."""
    if limited:
        return dg.AssetCheckResult(
            asset_key=asset,
            check_name="accuracy_gate",
            passed=True,
            metadata={"accuracy": accuracy, "threshold": threshold, "note": "skipped: limited run (MNIST_ASSETS_LIMIT/EPOCHS set)"},
        )
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="accuracy_gate",
        passed=accuracy >= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"accuracy": accuracy, "threshold": threshold},
    )
