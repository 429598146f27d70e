"""CLIP zero-shot classification with prompt-template ensembles (as in the CLIP paper).

Each class's text embedding is the mean of its normalized template embeddings,
normalized again; logits are the model's logit scale times cosine similarity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mnist_assets.ml.models.clip_models import LoadedClip

DIGIT_NAMES = [str(d) for d in range(10)]
# The series' class names ("0 - zero", ...) and its single template ("A photo of 0 - zero").
SERIES_NAMES = [f"{d} - {w}" for d, w in enumerate("zero one two three four five six seven eight nine".split())]
SERIES_TEMPLATES = ["A photo of {}"]
# The CLIP paper's MNIST template.
OFFICIAL_TEMPLATES = ['a photo of the number: "{}".']
# The default ensemble: the official template plus handwriting-aware ones.
ENSEMBLE_TEMPLATES = [
    'a photo of the number: "{}".',
    "a photo of the digit {}.",
    "a handwritten digit {}.",
    "a photo of a handwritten {}.",
    "the number {} written in white on a black background.",
    "a black and white image of the digit {}.",
    "a blurry photo of the number {}.",
    "a low resolution image of the digit {}.",
]
TEMPLATE_SETS = {"series": SERIES_TEMPLATES, "official": OFFICIAL_TEMPLATES, "ensemble": ENSEMBLE_TEMPLATES}
CLASS_NAME_SETS = {"digits": DIGIT_NAMES, "series": SERIES_NAMES}
# Objects rather than digits (Fashion-MNIST): CLIP-paper style templates for small grayscale photos.
OBJECT_TEMPLATES = [
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a blurry photo of a {}.",
    "a product photo of a {}.",
    "a grayscale photo of a {}, a fashion item.",
]


def validate_templates(templates: list[str]) -> list[str]:
    if not templates:
        raise ValueError("at least one prompt template is needed")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"prompt template {template!r} must contain exactly one '{{}}' where the class name goes")
    return templates


@torch.inference_mode()
def text_classifier(clip: LoadedClip, class_names: list[str], templates: list[str], device: str = "cpu") -> torch.Tensor:
    """[D, C] zero-shot weights: per class, the renormalized mean of normalized template embeddings."""
    validate_templates(templates)
    weights = []
    for name in class_names:
        tokens = clip.tokenizer([template.format(name) for template in templates]).to(device)
        embeddings = F.normalize(clip.model.encode_text(tokens).float(), dim=-1)
        weights.append(F.normalize(embeddings.mean(dim=0), dim=-1))
    return torch.stack(weights, dim=1).cpu()


def zero_shot_logits(clip: LoadedClip, image_embeddings: np.ndarray, classifier: torch.Tensor) -> np.ndarray:
    """[N, C] logits: logit scale times cosine similarity (image embeddings must be normalized)."""
    scale = clip.model.logit_scale.detach().exp().item()
    return scale * (torch.from_numpy(image_embeddings).float() @ classifier).numpy()
