"""Models, training loop, inference and checkpoints on real MNIST digits (no Dagster)."""

import numpy as np
import pytest
import torch
from scipy.special import softmax

from mnist_assets.ml.data.idx_source import MNIST_PIXEL_MEAN, MNIST_PIXEL_STD
from mnist_assets.ml.data.tensors import SplitTensors, iterate_batches, normalize, on_device
from mnist_assets.ml.models.architectures import ARCHITECTURES, ModernLeNet5, SmallResNet, SmallVGG, build_model, parameter_count
from mnist_assets.ml.models.checkpoints import CheckpointError, checkpoint_payload, load_models, save_checkpoint_set, save_payload
from mnist_assets.ml.models.cross_validation import out_of_fold_logits, stratified_folds
from mnist_assets.ml.models.training import TrainConfig, ensemble_logits, evaluate, fit, predict

MEAN, STD = MNIST_PIXEL_MEAN, MNIST_PIXEL_STD


def tensors(images, labels):
    return SplitTensors(
        torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)), [str(i) for i in range(len(labels))], MEAN, STD
    )


def save_checkpoint(path, **fields):
    save_payload(path, checkpoint_payload(**fields))


def load_model(path):
    return load_models(path)[0]


def load_checkpoint(path):
    return load_models(path)[0][1]


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return (
        tensors(mnist.train_images[:3000], mnist.train_labels[:3000]),
        tensors(mnist.train_images[3000:4000], mnist.train_labels[3000:4000]),
        tensors(mnist.test_images[:1000], mnist.test_labels[:1000]),
    )


@pytest.mark.parametrize("model_class", [ModernLeNet5, SmallResNet, SmallVGG])
def test_models_give_logits_and_84d_fc1(model_class):
    model = model_class().eval()
    images = torch.zeros(5, 28, 28, dtype=torch.uint8)
    logits, embeddings = predict(model, SplitTensors(images, torch.zeros(5, dtype=torch.int64), ["a"] * 5, MEAN, STD))
    assert logits.shape == (5, 10) and embeddings.shape == (5, 84)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_models_take_the_datasets_channels_size_and_classes(arch, tmp_path):
    """RGB 32x32 with 3 classes: LeNet-5's third convolution becomes the paper's 5x5 (ends at 1x1)."""
    model = build_model(arch, seed=1, num_classes=3, in_channels=3, image_size=32).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    logits, embeddings = predict(model, SplitTensors(images, torch.zeros(4, dtype=torch.int64), ["a"] * 4, MEAN, STD))
    assert logits.shape == (4, 3) and embeddings.shape == (4, 84)
    if arch == "lenet5":
        assert model.features[6].kernel_size == (5, 5) and ModernLeNet5().features[6].kernel_size == (4, 4)
    # The checkpoint records the shape, so loading rebuilds the same model.
    path = tmp_path / "rgb.pt"
    shape = {"num_classes": 3, "in_channels": 3, "image_size": 32}
    save_checkpoint(path, arch=arch, model=model.state_dict(), optimizer={}, epoch=1, metrics={}, settings=shape)
    loaded, _ = load_model(path)
    assert np.allclose(
        predict(loaded.eval(), SplitTensors(images, torch.zeros(4, dtype=torch.int64), ["a"] * 4, MEAN, STD))[0], logits, atol=1e-5
    )
    if arch != "resnet_small":  # global average pooling takes any size
        with pytest.raises(ValueError, match="at least 16x16"):
            build_model(arch, image_size=12)


def test_the_vgg_grows_a_stage_per_halving_of_larger_images():
    """Sized by the declared image: 28 and 32 pixels end at 7 and 8 after 3 stages; 64 takes a fourth."""
    pools = lambda model: sum(isinstance(layer, torch.nn.MaxPool2d) for layer in model.features)  # noqa: E731
    assert [pools(build_model("vgg_small", image_size=size)) for size in (28, 32, 64, 128)] == [2, 2, 3, 4]
    assert parameter_count(build_model("vgg_small")) < parameter_count(build_model("vgg_wide")) < 1_000_000


def test_batches_are_normalized_seeded_and_cover_everything(small_mnist):
    train, _, _ = small_mnist
    first = [labels for _, labels in iterate_batches(train, 64, shuffle=True, generator=torch.Generator().manual_seed(1))]
    again = [labels for _, labels in iterate_batches(train, 64, shuffle=True, generator=torch.Generator().manual_seed(1))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert sorted(torch.cat(first).tolist()) == sorted(train.labels.tolist())
    x = normalize(train.images, MEAN, STD)
    assert x.shape == (3000, 1, 28, 28) and abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1


def test_lenet_learns_real_digits_and_keeps_best_validation_state(small_mnist):
    train, validation, test = small_mnist
    result = fit(ModernLeNet5(), train, validation, TrainConfig(epochs=3))
    assert len(result.history) == 3
    assert result.best_metrics["val_loss"] == min(row["val_loss"] for row in result.history)
    kept_model = ModernLeNet5()
    kept_model.load_state_dict(result.best_state)
    assert evaluate(kept_model, validation, "cpu")[0] == pytest.approx(result.best_metrics["val_loss"], rel=1e-5)
    model = ModernLeNet5()
    model.load_state_dict(result.best_state)
    _, accuracy = evaluate(model, test, "cpu")
    assert accuracy > 0.90  # 3,000 real digits, 3 epochs: well above chance (0.10)


@pytest.mark.parametrize("augmentation", ["none", "affine"])
def test_training_is_deterministic_on_cpu(small_mnist, augmentation):
    train, validation, _ = small_mnist
    subset = SplitTensors(train.images[:500], train.labels[:500], train.sample_ids[:500], MEAN, STD)
    config = TrainConfig(epochs=1, seed=7, batch_augmentation=augmentation)
    states = [fit(build_model("lenet5", seed=7), subset, validation, config).best_state for _ in range(2)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_keep_last_keeps_the_final_epoch_state(small_mnist):
    train, validation, _ = small_mnist
    subset = SplitTensors(train.images[:500], train.labels[:500], train.sample_ids[:500], MEAN, STD)
    model = build_model("lenet5", seed=3)
    result = fit(model, subset, validation, TrainConfig(epochs=3, seed=3, keep="last"))
    assert result.best_epoch == 3 and result.best_metrics == result.history[-1]
    assert evaluate(model, validation, "cpu")[0] == pytest.approx(result.history[-1]["val_loss"], rel=1e-5)


def test_bf16_training_learns_real_digits_as_fp32_does_and_keeps_fp32_weights(small_mnist):
    """bf16 autocast in the training steps (the CNN's recipe where the hardware has it): the same
    digits learned to within a point, the kept weights still fp32 (what export and predict read)."""
    train, validation, test = small_mnist
    accuracies = {}
    for precision in ("fp32", "bf16"):
        model = build_model("vgg_small", seed=5)
        result = fit(model, train, validation, TrainConfig(arch="vgg_small", epochs=2, batch_size=128, seed=5, precision=precision))
        assert result.precision == precision
        assert all(value.dtype == torch.float32 for value in result.best_state.values() if value.is_floating_point())
        accuracies[precision] = evaluate(model, test, "cpu")[1]
    assert accuracies["fp32"] > 0.9 and abs(accuracies["bf16"] - accuracies["fp32"]) < 0.01, accuracies


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="epochs must be a positive"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig(recipe="magic").validate()
    with pytest.raises(ValueError, match="unknown keep 'median'"):
        TrainConfig(keep="median").validate()
    with pytest.raises(ValueError, match="unknown batch_augmentation 'cutout'"):
        TrainConfig(batch_augmentation="cutout").validate()
    with pytest.raises(ValueError, match="random_erasing is a probability"):
        TrainConfig(random_erasing=-0.1).validate()
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; choose one of \('auto', 'fp32', 'bf16'\)"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_last_batch_of_one_sample_trains(small_mnist, arch):
    """129 samples in batches of 128 end with one: batch norm still has 7x7 or more values per channel."""
    train, validation, _ = small_mnist
    subset = SplitTensors(train.images[:129], train.labels[:129], train.sample_ids[:129], MEAN, STD)
    result = fit(build_model(arch, seed=2), subset, validation, TrainConfig(arch=arch, epochs=1, batch_size=128, random_erasing=0.5))
    assert np.isfinite(result.history[0]["train_loss"])


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = ModernLeNet5()
    path = tmp_path / "lenet.pt"
    save_checkpoint(path, arch="lenet5", model=model.state_dict(), optimizer={}, epoch=3, metrics={"val_loss": 0.1}, settings={"seed": 51})
    loaded, payload = load_model(path)
    assert payload["epoch"] == 3 and all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated or not a safe checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an mnist_assets classifier checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_set_round_trip_and_refusals(tmp_path):
    """The fold models travel as one file: all members come back, in order; a plain checkpoint
    loads as a set of one; a set is not mistaken for a single checkpoint, nor a foreign file for a set."""
    models = [build_model("lenet5", seed) for seed in (1, 2, 3)]
    payloads = [
        checkpoint_payload(arch="lenet5", model=m.state_dict(), optimizer={}, epoch=i + 1, metrics={}, settings={"mean": 0.13, "std": 0.31})
        for i, m in enumerate(models)
    ]
    path = tmp_path / "folds.pt"
    save_checkpoint_set(path, payloads)
    loaded = load_models(path)
    assert [payload["epoch"] for _, payload in loaded] == [1, 2, 3]
    for (model, _), original in zip(loaded, models):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in original.state_dict().items())
    single = tmp_path / "single.pt"
    save_checkpoint(single, arch="lenet5", model=models[0].state_dict(), optimizer={}, epoch=7, metrics={}, settings={})
    assert [payload["epoch"] for _, payload in load_models(single)] == [7]
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "mnist_assets.classifier_set/1", "members": [{"weights": torch.zeros(3)}]}, foreign)
    with pytest.raises(CheckpointError, match="not an mnist_assets classifier set"):
        load_models(foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or not a safe checkpoint"):
        load_models(truncated)


def test_folds_are_stratified_seeded_and_cover_every_sample(mnist):
    labels = mnist.train_labels[:2000]
    fold_of = stratified_folds(labels, 5, seed=51)
    assert sorted(np.bincount(fold_of)) == [400] * 5
    for digit in range(10):  # each class spread evenly over the folds
        counts = np.bincount(fold_of[labels == digit], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(fold_of, stratified_folds(labels, 5, seed=51))
    assert not np.array_equal(fold_of, stratified_folds(labels, 5, seed=52))
    with pytest.raises(ValueError, match="at least 2"):
        stratified_folds(labels, 1, seed=51)
    with pytest.raises(ValueError, match="3 samples cannot be split into 5 folds"):
        stratified_folds(labels[:3], 5, seed=51)
    few = labels[:20]  # 20 labels, no class with 5: nothing to stratify, folds of 4 all the same
    assert np.bincount(few).max() < 5
    assert sorted(np.bincount(stratified_folds(few, 5, seed=51))) == [4] * 5


def test_folds_ignore_classes_absent_from_the_split(mnist):
    """A split may hold only some of the declared classes (a folder or a limit): the class indices
    that are absent must not stop the folds (they did: bincount counted them as empty classes)."""
    labels = mnist.train_labels[:3000]
    labels = labels[(labels == 2) | (labels == 7)]  # classes 0, 1, 3-6, 8, 9 absent
    fold_of = stratified_folds(labels, 5, seed=51)
    assert set(np.unique(fold_of)) == set(range(5))
    for digit in (2, 7):
        counts = np.bincount(fold_of[labels == digit], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_out_of_fold_predictions_see_through_flipped_labels(small_mnist):
    """Each sample is predicted by the fold model that never saw it (or its wrong label): flipped
    samples come out as their true digit, which is what makes out-of-sample scores find label errors."""
    train, validation, test = small_mnist
    flipped = np.arange(0, 3000, 50)  # 60 labels changed to another digit
    true_labels = train.labels.numpy().copy()
    noisy = true_labels.copy()
    noisy[flipped] = (noisy[flipped] + 1 + np.arange(len(flipped)) % 9) % 10
    data = SplitTensors(train.images, torch.from_numpy(noisy), train.sample_ids, MEAN, STD)
    config = TrainConfig(epochs=3)
    result = out_of_fold_logits(lambda fold: build_model("lenet5", 51 + fold), data, validation, config, folds=3)
    assert result.logits.shape == (3000, 10) and np.isfinite(result.logits).all()
    # the kept fold models as an ensemble on another split: softmax of its logits = mean probability
    models = [build_model("lenet5", 0) for _ in result.fits]
    for model, fold_fit in zip(models, result.fits):
        model.load_state_dict(fold_fit.best_state)
    ensemble = ensemble_logits(models, test)
    each = [softmax(predict(model, test)[0].astype(np.float64), axis=1) for model in models]
    assert ensemble.shape == (len(test), 10) and np.allclose(softmax(ensemble, axis=1), np.mean(each, axis=0), atol=1e-5)
    assert (ensemble.argmax(axis=1) == test.labels.numpy()).mean() > 0.9
    assert np.array_equal(ensemble_logits(models[:1], test), predict(models[0], test)[0])  # one model: its own logits
    predicted = result.logits.argmax(axis=1)
    assert result.misclassified == int((predicted != noisy).sum())
    assert (predicted[flipped] == true_labels[flipped]).mean() > 0.8  # out of sample: the true digit
    assert [row["held_out"] for row in result.fold_rows] == [1000, 1000, 1000]


def test_splits_move_to_the_device_once_and_batch_there(small_mnist):
    train, _, _ = small_mnist
    placed = on_device(train, "cpu")
    assert placed.images is train.images and placed.labels is train.labels  # already there: no copy
    batches = list(iterate_batches(placed, 1000, shuffle=True, generator=torch.Generator().manual_seed(3)))
    expected = list(iterate_batches(train, 1000, shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, expected))
    assert batches[0][0].device == placed.images.device and batches[0][0].dtype == torch.float32


def test_the_default_recipe_trains_a_small_folder_to_nearly_always_right(tmp_path):
    """600 generated 48x48 RGB shapes (circle, square, triangle) declared at 32x32: ten plain epochs,
    80 optimizer steps, left the checkpoint near chance; the checkpoint's recipe (at least MIN_STEPS
    steps, the batch affine a folder gets by default) gets them right."""
    from image_folders import write_shapes_folder

    from mnist_assets.ml.data.dataset_spec import DatasetSpec
    from mnist_assets.ml.data.sources import load_source, split_of
    from mnist_assets.ml.data.tensors import channels_first
    from mnist_assets.ml.models.recipes import resolve

    spec = DatasetSpec(name="shapes", source="folder", path=str(write_shapes_folder(tmp_path / "shapes")), image_size=32, channels=3)
    source = load_source(spec, None, tmp_path)
    parts = {split: split_of(source, spec, split, None) for split in ("train", "validation", "test")}
    pixels = channels_first(torch.from_numpy(parts["train"].images)).float() / 255
    stats = (float(pixels.mean()), float(pixels.std()))

    def split(name):
        part = parts[name]
        return SplitTensors(
            channels_first(torch.from_numpy(part.images)), torch.from_numpy(part.labels), [str(i) for i in part.indices], *stats
        )

    train, validation, test = split("train"), split("validation"), split("test")
    assert (len(train), len(test)) == (510, 180)

    def test_accuracy(config):
        model = build_model(config.arch, config.seed, **spec.model_shape())
        fit(model, train, validation, config)
        return float((predict(model, test)[0].argmax(1) == test.labels.numpy()).mean())

    recipe = resolve("checkpoint", spec, {})
    assert (recipe.batch_augmentation, recipe.planned_epochs(len(train))) == ("affine", 125)
    assert test_accuracy(recipe) >= 0.95
    assert test_accuracy(TrainConfig(epochs=10)) < 0.8  # the old default: 80 steps, no augmentation


def test_the_moving_average_is_what_is_validated_and_kept(small_mnist):
    """With `ema` the kept state is the weights' average, not the last step's: it differs from the
    trained weights, and evaluating it gives the recorded validation loss."""
    train, validation, _ = small_mnist
    model = build_model("vgg_small", seed=5)
    result = fit(model, train, validation, TrainConfig(arch="vgg_small", epochs=2, batch_size=128, ema=0.99, keep="last", seed=5))
    assert result.best_metrics["val_accuracy"] > 0.85
    kept = build_model("vgg_small")
    kept.load_state_dict(result.best_state)
    assert evaluate(kept, validation, "cpu")[0] == pytest.approx(result.best_metrics["val_loss"], rel=1e-4)
    trained = fit(
        build_model("vgg_small", seed=5), train, validation, TrainConfig(arch="vgg_small", epochs=2, batch_size=128, keep="last", seed=5)
    )
    assert not torch.equal(trained.best_state["fc2.weight"], result.best_state["fc2.weight"])
    with pytest.raises(ValueError, match="ema is a decay"):
        TrainConfig(ema=1.0).validate()


def test_a_stronger_candidate_wins_the_release_and_every_architecture_exports_with_parity(small_mnist):
    """The release judges candidates on validation alone: the CNN, trained with its recipe, beats a
    LeNet trained one epoch, and wins; each architecture's ONNX export agrees with PyTorch on test."""
    from mnist_assets.ml.release import export as release

    train, validation, test = small_mnist
    lenet = build_model("lenet5", seed=1)
    fit(lenet, train, validation, TrainConfig(epochs=1, seed=1))
    cnn = build_model("vgg_small", seed=1)
    fit(cnn, train, validation, TrainConfig(arch="vgg_small", epochs=4, batch_size=128, label_smoothing=0.1, seed=1))
    candidates = [
        release.Candidate("lenet_checkpoint", release.Probabilities([lenet], MEAN, STD), "LeNet, 1 epoch"),
        release.Candidate("cnn_checkpoint", release.Probabilities([cnn], MEAN, STD), "the CNN", parameters=parameter_count(cnn)),
    ]
    validation_images, test_images = validation.images[:, None], test.images[:, None]  # uint8 [N, 1, 28, 28], as the release takes them
    for candidate in candidates:
        release.score(candidate, (validation_images, validation.labels.numpy()), (test_images, test.labels.numpy()), list("0123456789"))
    winner, reason = release.choose(candidates)
    assert winner.name == "cnn_checkpoint" and winner.validation_accuracy > candidates[0].validation_accuracy
    assert winner.test_accuracy > 0.95, reason  # 3,000 digits, 4 epochs
    for arch in [*sorted(ARCHITECTURES), "vgg_small mirrored"]:
        model = cnn if arch.startswith("vgg_small") else lenet if arch == "lenet5" else build_model(arch, seed=2).eval()
        wrapped = release.Probabilities([model], MEAN, STD, mirror=arch.endswith("mirrored"))  # the mirror inside the graph
        graph = release.export_onnx(wrapped, 1, 28, {})
        check = release.parity(
            release.probabilities(wrapped, test_images), release.onnx_probabilities(graph, test_images.numpy()), test.labels.numpy()
        )
        assert check.passed, (arch, check)
    row = release.costs(winner, test_images.numpy(), 1, 28)
    assert row["model"] == "cnn_checkpoint" and row["parameters"] == parameter_count(cnn)
    assert row["onnx_bytes"] > 4 * parameter_count(cnn) * 0.9 and row["onnx_images_per_second"] > 0


def test_a_tie_goes_to_the_model_with_fewer_multiply_adds_measured_on_the_model_itself():
    """A fixed table by candidate name ranked every cnn_checkpoint above five LeNets, whatever its
    `cnn_arch`, and ignored the mirrored pass; the cost is now counted on the model."""
    from mnist_assets.ml.release import export as release

    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    lenet = build_model("lenet5", seed=1)
    single = release.multiply_adds(release.Probabilities([lenet], MEAN, STD), image)
    assert 250_000 < single < 320_000  # LeNet-5 at 28x28: 0.28 M multiply-adds
    assert release.multiply_adds(release.Probabilities([lenet], MEAN, STD, mirror=True), image) == 2 * single
    assert release.multiply_adds(release.Probabilities([lenet] * 5, MEAN, STD), image) == 5 * single
    costs = {
        arch: release.multiply_adds(release.Probabilities([build_model(arch, seed=1)], MEAN, STD), image)
        for arch in ("vgg_small", "vgg_wide")
    }
    assert single < costs["vgg_small"] < costs["vgg_wide"]
    # A CNN declared as `cnn_arch: lenet5` ties with the five-LeNet ensemble: the single net is cheaper.
    ensemble = release.Candidate("fold_ensemble", release.Probabilities([lenet] * 5, MEAN, STD), "five LeNets")
    cnn = release.Candidate("cnn_checkpoint", release.Probabilities([lenet], MEAN, STD), "cnn_arch: lenet5")
    labels = np.zeros(1, dtype=np.int64)
    for candidate in (ensemble, cnn):
        release.score(candidate, (image, labels), (image, labels), list("0123456789"))
    assert (ensemble.cost, cnn.cost) == (5 * single, single)
    winner, reason = release.choose([ensemble, cnn])
    assert winner is cnn and "tied with fold_ensemble and cheaper to run" in reason


def test_each_keep_rule_keeps_the_state_it_names(small_mnist, monkeypatch):
    """`best`: the lowest validation loss; `accuracy`: the highest validation accuracy (the later epoch
    on a tie); `last`: the final epoch. Validation is scripted so the three differ; the weights kept
    are exactly the ones evaluated at that epoch."""
    from mnist_assets.ml.models import training

    train, validation, _ = small_mnist
    scripted = [(0.5, 0.80), (0.3, 0.85), (0.6, 0.90), (0.7, 0.90), (0.4, 0.70)]  # (loss, accuracy) per epoch
    for keep, expected in (("best", 2), ("accuracy", 4), ("last", 5)):
        seen = []

        def evaluate_scripted(model, data, device, memory_format=None, seen=seen):
            seen.append(torch.cat([w.detach().flatten().clone() for w in model.state_dict().values() if w.is_floating_point()]))
            return scripted[len(seen) - 1]

        monkeypatch.setattr(training, "evaluate", evaluate_scripted)
        model = build_model("lenet5", seed=3)
        subset = SplitTensors(train.images[:256], train.labels[:256], [], train.mean, train.std)
        result = fit(model, subset, validation, TrainConfig(epochs=5, seed=3, keep=keep))
        assert result.best_epoch == expected, keep
        kept = torch.cat([w.flatten() for w in model.state_dict().values() if w.is_floating_point()])
        assert torch.equal(kept, seen[expected - 1]) and not torch.equal(kept, seen[expected - 2])
