"""The prompt-engineering exercise: zero-shot accuracy of each template set and preprocessing option.

Needs real CLIP weights (an open_clip tag cached locally or a checkpoint file)
and mnist/raw_dataset[test] materialized. Prints one table: accuracy and per-class recall.

    .venv/bin/python scripts/prompt_study.py --model ViT-B-32 --pretrained openai
"""

import argparse

from mnist_assets.ml.data.tensors import load_view_tensors
from mnist_assets.ml.models.clip_models import embed_images, load_clip
from mnist_assets.ml.models.zero_shot import CLASS_NAME_SETS, TEMPLATE_SETS, text_classifier, zero_shot_logits
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.pipeline import declared_spec
from mnist_assets.resources import Settings

PREPROCESSING = {"plain": dict(invert=False, pad=0), "inverted": dict(invert=True, pad=0), "inverted+pad4": dict(invert=True, pad=4)}
RUNS = [("series", "series"), ("official", "digits"), ("ensemble", "digits"), ("ensemble", "series")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    settings = Settings.from_env()
    clip = load_clip(args.model, args.pretrained, settings.torch_device())
    store = settings.store("mnist")
    spec = declared_spec("mnist")
    tensors = load_view_tensors(
        split_view(store.dataset(), args.split),
        store.tensor_cache_dir,
        classes=spec.classes(),
        channels=spec.channels,
        size=spec.image_size,
    )
    labels = tensors.labels.numpy()
    print(f"{args.model} / {clip.weights}, {len(labels)} {args.split} samples")
    print("| templates | class names | preprocessing | accuracy | " + " | ".join(f"recall {d}" for d in range(10)) + " |")
    print("|---" * 14 + "|")
    for preprocessing, options in PREPROCESSING.items():
        embeddings, _ = embed_images(clip, tensors.images, args.batch_size, settings.torch_device(), **options)
        for template_set, names in RUNS:
            classifier = text_classifier(clip, CLASS_NAME_SETS[names], TEMPLATE_SETS[template_set], settings.torch_device())
            predicted = zero_shot_logits(clip, embeddings, classifier).argmax(1)
            recall = [float((predicted[labels == d] == d).mean()) for d in range(10)]
            print(
                f"| {template_set} | {names} | {preprocessing} | {float((predicted == labels).mean()):.4f} | "
                + " | ".join(f"{r:.3f}" for r in recall)
                + " |"
            )


if __name__ == "__main__":
    main()
