"""Helpers that turn plain results into Dagster metadata values."""

from __future__ import annotations

import base64

import dagster as dg


def png(png_bytes: bytes, caption: str = "plot") -> dg.MetadataValue:
    """A PNG shown inline in the asset's metadata panel."""
    encoded = base64.b64encode(png_bytes).decode()
    return dg.MetadataValue.md(f"![{caption}](data:image/png;base64,{encoded})")


def markdown_table(rows: list[dict]) -> dg.MetadataValue:
    """Rows of equal keys as a markdown table."""
    if not rows:
        return dg.MetadataValue.md("(empty)")
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[column]) for column in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def class_counts(labels, classes: list[str]) -> dict[str, int]:
    """Counts per class name (zeros included), as plain ints; labels are names or positions."""
    counts = {name: 0 for name in classes}
    for label in labels:
        counts[label if isinstance(label, str) else classes[int(label)]] += 1
    return counts
