"""CLIP code with the tiny architecture and random weights: shapes, normalization, determinism, errors.

Random weights give chance accuracy, so nothing here asserts accuracy.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_assets.ml.models.clip_models import (
    ClipWeightsError,
    autocast_dtype,
    embed_images,
    load_clip,
    preprocess_batch,
    validate_clip_settings,
)
from mnist_assets.ml.models.zero_shot import OFFICIAL_TEMPLATES, text_classifier, validate_templates, zero_shot_logits


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_clip("mnist-tiny", "none")


@pytest.fixture(scope="module")
def digits(mnist):
    return torch.from_numpy(mnist.test_images[:70].copy())


def test_preprocessing_matches_model_input(tiny, digits):
    batch = preprocess_batch(digits, tiny)
    assert batch.shape == (70, 3, 32, 32)
    # A black pixel maps to (0 - mean) / std, channel by channel.
    corner = batch[0, :, 0, 0]
    assert torch.allclose(corner, (0 - torch.tensor(tiny.mean)) / torch.tensor(tiny.std), atol=1e-5)
    inverted = preprocess_batch(digits, tiny, invert=True, pad=4)
    assert torch.allclose(inverted[0, :, 0, 0], (1 - torch.tensor(tiny.mean)) / torch.tensor(tiny.std), atol=1e-5)


def test_rgb_images_of_any_size_are_preprocessed_channel_by_channel(tiny, digits):
    """[B, 3, 40, 40] RGB: each channel resized and standardized by its own mean and std; a gray
    image given as three equal channels preprocesses exactly as the gray one."""
    big = torch.nn.functional.interpolate(digits[:8].unsqueeze(1).float(), size=40).round().to(torch.uint8)
    as_rgb = big.repeat(1, 3, 1, 1)
    assert torch.allclose(preprocess_batch(as_rgb, tiny), preprocess_batch(big, tiny), atol=1e-5)
    red_only = as_rgb * torch.tensor([1, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    batch = preprocess_batch(red_only, tiny)
    assert batch.shape == (8, 3, 32, 32)
    green_black = (0 - tiny.mean[1]) / tiny.std[1]
    assert torch.allclose(batch[:, 1], torch.full_like(batch[:, 1], green_black), atol=1e-5)
    assert embed_images(tiny, red_only)[0].shape == (8, 64)


def test_embeddings_are_normalized_and_deterministic(tiny, digits):
    first, speed = embed_images(tiny, digits, batch_size=32)
    again, _ = embed_images(tiny, digits, batch_size=7)  # batching must not change results
    assert first.shape == (70, 64) and speed > 0
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.allclose(first, again, atol=1e-5)


def test_ensemble_of_one_template_equals_single_template(tiny):
    template = OFFICIAL_TEMPLATES[0]
    names = [str(d) for d in range(10)]
    ensemble = text_classifier(tiny, names, [template])
    with torch.inference_mode():
        single = F.normalize(tiny.model.encode_text(tiny.tokenizer([template.format(n) for n in names])).float(), dim=-1)
    assert torch.allclose(ensemble, single.T, atol=1e-5)
    two = text_classifier(tiny, names, [template, "a digit {}."])
    assert two.shape == (64, 10) and torch.allclose(two.norm(dim=0), torch.ones(10), atol=1e-5)
    assert not torch.allclose(two, ensemble)


def test_zero_shot_logits_are_scaled_cosines(tiny, digits):
    embeddings, _ = embed_images(tiny, digits)
    classifier = text_classifier(tiny, [str(d) for d in range(10)], OFFICIAL_TEMPLATES)
    logits = zero_shot_logits(tiny, embeddings, classifier)
    scale = tiny.model.logit_scale.exp().item()
    # Each logit is the scaled cosine of the image's and the class's unit vectors, nothing else.
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert logits.shape == (70, 10) and np.allclose(logits, scale * embeddings @ classifier.numpy(), atol=1e-4)


def test_local_checkpoint_file_is_loaded(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    loaded = load_clip("mnist-tiny", str(path))
    assert loaded.weights.startswith("file-")
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in tiny.model.state_dict().items())


def test_missing_weights_fail_fast_with_both_fixes(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    # Offline with an empty cache, whatever this machine can reach: the state the message is for.
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ClipWeightsError) as error:
        load_clip("ViT-B-32", "openai")
    message = str(error.value)
    assert "Hugging Face cache" in message and "MNIST_ASSETS_CLIP_PRETRAINED" in message


def test_bad_clip_settings_are_refused():
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        validate_clip_settings("ViT-Z-99", "none")
    with pytest.raises(ValueError, match="no such file"):
        validate_clip_settings("mnist-tiny", "/nowhere/clip.pt")
    with pytest.raises(ClipWeightsError, match="not a pretrained tag"):
        load_clip("ViT-B-32", "no-such-tag")
    with pytest.raises(ValueError, match="exactly one"):
        validate_templates(["a photo of a digit"])


def test_bf16_embeddings_agree_with_fp32_on_real_digits(tiny, digits):
    """The precision setting: bf16 autocast (CUDA's default) gives the fp32 embeddings to a cosine of 0.999."""
    fp32, _ = embed_images(tiny, digits, precision="fp32")
    bf16, _ = embed_images(tiny, digits, precision="bf16")
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    cosine = (fp32 * bf16).sum(axis=1)  # both L2-normalized
    assert cosine.min() >= 0.999
    assert autocast_dtype("auto", "cpu") is None and autocast_dtype("auto", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("fp8", "cpu")
