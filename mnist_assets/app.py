"""`make app`: the FiftyOne App on the project's dataset, on 127.0.0.1 unless told otherwise."""

import argparse

from mnist_assets.pipeline import declared_spec
from mnist_assets.resources import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", default="5151", help="1-65535 (APP_PORT)")
    parser.add_argument("--view", help="open a saved view, e.g. review-queue-test")
    parser.add_argument("--dataset", default="mnist", help="a declared dataset (the `name` its defs.yaml declares), default mnist")
    args = parser.parse_args()
    # At once: FiftyOne retries a port it cannot bind forever, and importing it takes seconds.
    if not (args.port.isascii() and args.port.isdigit() and 1 <= int(args.port) <= 65535):
        parser.exit(2, f"APP_PORT (--port) {args.port!r} is not a TCP port: give a number from 1 to 65535, e.g. APP_PORT=5151.\n")
    args.port = int(args.port)
    import fiftyone as fo

    settings = Settings.from_env()
    try:
        declared_spec(args.dataset)
    except ValueError as error:
        raise SystemExit(f"{error}; pass DATASET=<one of them>.") from None
    store = settings.store(args.dataset)
    if not store.exists() or len(store.dataset()) == 0:
        raise SystemExit(f"dataset {store.name!r} has no samples yet; run `make run` (or materialize {args.dataset}/raw_dataset) first.")
    dataset = store.dataset()
    saved = dataset.list_saved_views()
    if args.view and args.view not in saved:
        raise SystemExit(f"no saved view {args.view!r} in {dataset.name!r}; saved views: {', '.join(saved) or 'none yet'}.")
    target = dataset.load_saved_view(args.view) if args.view else dataset
    session = fo.launch_app(target, address=args.address, port=args.port, remote=True)
    print(f"FiftyOne App: http://{args.address}:{args.port}  dataset {dataset.name!r}, {len(dataset)} samples")
    print(f"saved views: {', '.join(saved) or 'none yet (materialize hardness_scores)'}")
    print("brain runs (embeddings panel):", ", ".join(dataset.list_brain_runs()) or "none yet")
    session.wait(-1)


if __name__ == "__main__":
    main()
