"""`make app`: the FiftyOne App on the project's dataset, on 127.0.0.1 unless told otherwise."""

import argparse

import fiftyone as fo

from mnist_assets.resources import MnistSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5151)
    parser.add_argument("--view", help="open a saved view, e.g. likely-mislabeled-test")
    parser.add_argument("--dataset", default="mnist", help="a declared dataset (mnist_assets/defs/<name>), default mnist")
    args = parser.parse_args()
    settings = MnistSettings.from_env()
    dataset = settings.store(args.dataset).dataset()
    if len(dataset) == 0:
        raise SystemExit(f"dataset {dataset.name!r} is empty; run `make run` (or materialize {args.dataset}/raw_dataset) first.")
    saved = dataset.list_saved_views()
    target = dataset.load_saved_view(args.view) if args.view else dataset
    session = fo.launch_app(target, address=args.address, port=args.port, remote=True)
    print(f"FiftyOne App: http://{args.address}:{args.port}  dataset {dataset.name!r}, {len(dataset)} samples")
    print(f"saved views: {', '.join(saved) or 'none yet (materialize hardness_scores)'}")
    print("brain runs (embeddings panel):", ", ".join(dataset.list_brain_runs()) or "none yet")
    session.wait(-1)


if __name__ == "__main__":
    main()
