"""Write docs/data-issues/*.png: the `worst_examples` grid of each dataset's latest
`<dataset>/data_issues[train]` materialization in the Dagster instance (after `make run`).

    python scripts/data_issue_figures.py                 # mnist -> mnist_train.png, fashion_mnist -> fashion_train.png
    python scripts/data_issue_figures.py --out /tmp/figs --datasets mnist
"""

import argparse
import base64
import re
import sys
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
FILE_NAMES = {"mnist": "mnist_train.png", "fashion_mnist": "fashion_train.png"}  # the names docs/data-issues.md shows
EMBEDDED_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def worst_examples_png(instance: dg.DagsterInstance, dataset: str, split: str = "train") -> bytes:
    """The PNG that `<dataset>/data_issues[split]` put in its `worst_examples` metadata (metadata.png)."""
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([dataset, "data_issues"]), asset_partitions=[split]), limit=1
    ).records
    if not record:
        raise SystemExit(f"{dataset}/data_issues[{split}] was never materialized in this instance; run `make run` first.")
    metadata = record[0].asset_materialization.metadata
    if "worst_examples" not in metadata:
        raise SystemExit(f"{dataset}/data_issues[{split}] flagged nothing, so it has no worst_examples grid.")
    found = EMBEDDED_PNG.search(metadata["worst_examples"].value)
    if found is None:
        raise SystemExit(f"{dataset}/data_issues[{split}]: worst_examples holds no embedded PNG.")
    return base64.b64decode(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "data-issues")
    parser.add_argument("--datasets", default=",".join(FILE_NAMES))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.get() as instance:
        for dataset in filter(None, args.datasets.split(",")):
            path = args.out / FILE_NAMES.get(dataset, f"{dataset}_train.png")
            path.write_bytes(worst_examples_png(instance, dataset))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
