"""The model a dataset ships: candidates judged on validation, the winner exported to ONNX with its
preprocessing inside, parity between the exported graph and the model, and its card.

The exported graph takes raw uint8 images `[N, C, H, W]` at the dataset's declared size and returns
class probabilities: dividing by 255 and standardizing by the train split's mean and std happen
inside, and an ensemble is one graph averaging its members' probabilities. The class names, image
size, channels, dataset, data version and code version travel in the ONNX metadata, so a program
needs only onnxruntime (`python -m mnist_assets.predict`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_assets.ml.release.comparison import per_class_recall

PARITY_TOLERANCE = 1e-5
INPUT, OUTPUT = "images", "probabilities"


class Probabilities(nn.Module):
    """uint8 images -> the mean class probability of `models` (one model: its own), with the
    standardization the models were trained with inside. With `mirror`, each model also sees the
    mirror image and the two are averaged (test-time augmentation for classes a mirror keeps, inside
    the exported graph)."""

    def __init__(self, models: list[nn.Module], mean: float, std: float, mirror: bool = False):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.mirror = mirror
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255.0 - self.mean) / self.std
        views = [x, torch.flip(x, dims=[3])] if self.mirror else [x]
        return torch.stack([torch.softmax(member(view), dim=1) for member in self.members for view in views]).mean(dim=0)


@dataclass
class Candidate:
    name: str  # the asset it comes from: lenet_checkpoint, finetuned_model, fold_ensemble, cnn_checkpoint
    model: nn.Module  # uint8 [N, C, H, W] -> probabilities [N, classes]
    description: str
    validation_accuracy: float = 0.0
    test_accuracy: float = 0.0
    per_class_recall: dict[str, float] = field(default_factory=dict)
    parameters: int = 0  # of every member
    training_seconds: float | None = None  # of every member, as their checkpoints recorded it
    cost: int = 0  # multiply-adds per image (`multiply_adds`), set by `score`: ties on validation go to the cheaper


def multiply_adds(model: nn.Module, image_uint8: torch.Tensor) -> int:
    """Multiply-adds of one image through `model` (every Conv2d and Linear it runs, so each member of
    an ensemble and a mirrored pass count): measured on the model, whatever its architecture."""
    total = 0

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = (
            module.in_features if isinstance(module, nn.Linear) else module.in_channels // module.groups * int(np.prod(module.kernel_size))
        )
        total += output[0].numel() * per_output

    hooks = [module.register_forward_hook(count) for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    try:
        model.eval()
        with torch.inference_mode():
            model(image_uint8[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return total


@torch.inference_mode()
def probabilities(model: nn.Module, images_uint8: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    model.eval()
    chunks = [model(images_uint8[start : start + batch_size]) for start in range(0, len(images_uint8), batch_size)]
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)


def score(candidate: Candidate, validation: tuple[torch.Tensor, np.ndarray], test: tuple[torch.Tensor, np.ndarray], classes: list[str]):
    """The candidate's accuracy on validation and test (images, class positions) and its per-class
    recall on test, in place."""
    (validation_images, validation_labels), (test_images, test_labels) = validation, test
    candidate.validation_accuracy = float((probabilities(candidate.model, validation_images).argmax(axis=1) == validation_labels).mean())
    predicted = probabilities(candidate.model, test_images).argmax(axis=1)
    candidate.test_accuracy = float((predicted == test_labels).mean())
    recall = per_class_recall([classes[i] for i in test_labels], [classes[i] for i in predicted], classes)
    candidate.per_class_recall = dict(zip(classes, recall))
    candidate.cost = multiply_adds(candidate.model, test_images[:1])


def choose(candidates: list[Candidate]) -> tuple[Candidate, str]:
    """The candidate with the best validation accuracy (ties: the cheapest, then the first), and why."""
    if not candidates:
        raise ValueError("no candidate model to release")
    winner = sorted(candidates, key=lambda c: (-c.validation_accuracy, c.cost))[0]
    others = [c for c in candidates if c is not winner]
    tied = [c.name for c in others if c.validation_accuracy == winner.validation_accuracy]
    reason = f"{winner.name}: the best validation accuracy, {winner.validation_accuracy:.4%}"
    if tied:
        reason += f", tied with {', '.join(tied)} and cheaper to run"
    if others:
        runner_up = max(others, key=lambda c: c.validation_accuracy)
        reason += f"; next {runner_up.name} at {runner_up.validation_accuracy:.4%}"
    return winner, reason + " (test accuracy is reported, never used to choose)"


def export_onnx(model: nn.Module, channels: int, size: int, metadata: dict[str, str]) -> bytes:
    """The model as ONNX bytes: input `images` uint8 [batch, C, H, W], output `probabilities`
    [batch, classes], a dynamic batch axis, and `metadata` as the model's metadata properties."""
    import onnx

    buffer = io.BytesIO()
    example = torch.zeros(1, channels, size, size, dtype=torch.uint8)
    torch.onnx.export(
        model.eval(),
        (example,),
        buffer,
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=17,
        dynamo=False,
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
    )
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    return graph.SerializeToString()


def weights_sha256(graph: bytes) -> str:
    """The SHA-256 of the model without its metadata properties (which record the data's version):
    the same network and weights give the same hash whatever data they were released on."""
    import hashlib

    import onnx

    model = onnx.load_from_string(graph)
    del model.metadata_props[:]
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def onnx_session(graph: Path | bytes):
    """An onnxruntime session on the CPU with default options, as `python -m mnist_assets.predict` opens it."""
    import onnxruntime

    return onnxruntime.InferenceSession(graph if isinstance(graph, bytes) else str(graph), providers=["CPUExecutionProvider"])


def onnx_probabilities(graph: Path | bytes, images_uint8: np.ndarray, batch_size: int = 1024, session=None) -> np.ndarray:
    """What onnxruntime makes of the images with an exported graph (a file, or its bytes)."""
    session = session or onnx_session(graph)
    images = np.ascontiguousarray(images_uint8, dtype=np.uint8)
    chunks = [session.run([OUTPUT], {INPUT: images[start : start + batch_size]})[0] for start in range(0, len(images), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def onnx_images_per_second(graph: Path | bytes | None, images_uint8: np.ndarray, repeats: int = 3, session=None) -> float:
    """Images per second through predict's session (or the `session` given), in batches of 1,024: the
    best of `repeats` passes over the images after one warm-up batch (the machine is shared: the best
    is the least disturbed)."""
    import time

    session = session or onnx_session(graph)
    onnx_probabilities(graph, images_uint8[:1024], session=session)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        onnx_probabilities(graph, images_uint8, session=session)
        best = min(best, time.perf_counter() - started)
    return len(images_uint8) / best


def costs(candidate: Candidate, images_uint8: np.ndarray, channels: int, size: int) -> dict:
    """A scored candidate's row of the comparison: accuracies, parameters, training seconds, and its
    ONNX export's size and speed on these images."""
    graph = export_onnx(candidate.model, channels, size, {})
    return {
        "model": candidate.name,
        "validation_accuracy": round(candidate.validation_accuracy, 5),
        "test_accuracy": round(candidate.test_accuracy, 5),
        "parameters": candidate.parameters,
        "multiply_adds": candidate.cost,
        "training_seconds": candidate.training_seconds,
        "onnx_bytes": len(graph),
        "onnx_images_per_second": round(onnx_images_per_second(graph, images_uint8)),
    }


@dataclass
class Parity:
    samples: int
    argmax_agree: int
    max_abs_difference: float
    onnx_accuracy: float
    model_accuracy: float

    @property
    def passed(self) -> bool:
        return (
            self.argmax_agree == self.samples and self.max_abs_difference <= PARITY_TOLERANCE and self.onnx_accuracy == self.model_accuracy
        )


def parity(model_probabilities: np.ndarray, exported_probabilities: np.ndarray, labels: np.ndarray) -> Parity:
    """The exported graph against the model on the same images: every argmax, the largest
    difference in probability, and the accuracy of each."""
    model_classes, exported_classes = model_probabilities.argmax(axis=1), exported_probabilities.argmax(axis=1)
    return Parity(
        samples=len(labels),
        argmax_agree=int((model_classes == exported_classes).sum()),
        max_abs_difference=float(np.abs(model_probabilities - exported_probabilities).max()) if len(labels) else 0.0,
        onnx_accuracy=float((exported_classes == labels).mean()) if len(labels) else 0.0,
        model_accuracy=float((model_classes == labels).mean()) if len(labels) else 0.0,
    )


@dataclass
class Duel:
    """The release in place (the champion, re-scored on the labels in use) against the best new
    candidate (the challenger): the challenger replaces it only when it is not worse on validation."""

    challenger: str
    challenger_accuracy: float
    champion: str | None = None  # its version; None: no release yet
    champion_model: str | None = None
    champion_accuracy: float | None = None  # None: none, or it cannot read the images as declared now
    champion_unusable: str | None = None  # why it could not be scored
    champion_sha256: str | None = None  # of its model.onnx, as its card says
    champion_weights_sha256: str | None = None  # of its network and weights (cards since issue 47)

    @property
    def challenger_wins(self) -> bool:
        return self.champion_accuracy is None or self.challenger_accuracy >= self.champion_accuracy

    @property
    def margin(self) -> float | None:
        return None if self.champion_accuracy is None else self.challenger_accuracy - self.champion_accuracy

    def summary(self) -> str:
        if self.champion is None:
            return f"{self.challenger} is the first release ({self.challenger_accuracy:.4%} on validation)"
        if self.champion_accuracy is None:
            return f"{self.challenger} replaces release {self.champion}, which cannot be scored now ({self.champion_unusable})"
        points = f"{abs(self.margin) * 100:.2f} points"
        if self.challenger_wins:
            return (
                f"{self.challenger} ({self.challenger_accuracy:.4%} on validation) replaces release {self.champion} "
                f"({self.champion_model}, {self.champion_accuracy:.4%} re-scored on the same labels): "
                + ("as good" if self.margin == 0 else f"better by {points}")
            )
        return (
            f"release {self.champion} ({self.champion_model}, {self.champion_accuracy:.4%} on validation, re-scored on the labels in use) "
            f"stays: the new {self.challenger} is worse by {points} ({self.challenger_accuracy:.4%})"
        )

    def as_dict(self) -> dict:
        return {
            "challenger": self.challenger,
            "challenger_validation_accuracy": self.challenger_accuracy,
            "champion_version": self.champion,
            "champion_model": self.champion_model,
            "champion_validation_accuracy": self.champion_accuracy,
            "winner": "challenger" if self.challenger_wins else "champion",
            "margin": self.margin,
            "summary": self.summary(),
        }


def duel(challenger: Candidate, champion_folder: Path | None, validation_images: np.ndarray, validation_labels: np.ndarray) -> Duel:
    """Score the release in place with onnxruntime on the validation images and labels the challenger
    was judged on (the labels in use now, whatever they were when it was released)."""
    result = Duel(challenger.name, challenger.validation_accuracy)
    if champion_folder is None:
        return result
    card_file = champion_folder / "model_card.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    result.champion = card.get("version") or champion_folder.name
    result.champion_model = card.get("model")
    result.champion_sha256 = card.get("model_sha256")
    result.champion_weights_sha256 = card.get("weights_sha256")
    try:
        predicted = onnx_probabilities(champion_folder / "model.onnx", validation_images).argmax(axis=1)
        result.champion_accuracy = float((predicted == validation_labels).mean()) if len(validation_labels) else 0.0
    except Exception as error:  # noqa: BLE001 - a model for another shape or an unreadable file loses to the challenger
        result.champion_unusable = str(error).splitlines()[0][:200]
    return result


def model_card(
    *,
    dataset: str,
    data_version: dict,
    code_version: str,
    winner: Candidate,
    reason: str,
    candidates: list[Candidate],
    classes: list[str],
    image_size: int,
    channels: int,
    recipe: dict,
    parity_result: Parity,
    version: str,
    model_sha256: str,
    conversion: dict,
    weights_sha256: str | None = None,
    contest: Duel,
    label_errors: dict | None = None,
    review: dict | None = None,
    limitations: list[str] = (),
) -> tuple[dict, str]:
    """The release's card as JSON (for programs) and Markdown (for people)."""
    card = {
        "dataset": dataset,
        "version": version,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_sha256": model_sha256,
        "weights_sha256": weights_sha256,
        "replaces": contest.as_dict(),
        "data_version": data_version,
        "code_version": code_version,
        "model": winner.name,
        "description": winner.description,
        "chosen_because": reason,
        "input": {
            "name": INPUT,
            "dtype": "uint8",
            "shape": ["batch", channels, image_size, image_size],
            "standardization": "inside the graph",
            "conversion": conversion,
        },
        "output": {"name": OUTPUT, "shape": ["batch", len(classes)], "classes": classes},
        "recipe": recipe,
        "candidates": [
            {"model": c.name, "description": c.description, "validation_accuracy": c.validation_accuracy, "test_accuracy": c.test_accuracy}
            for c in candidates
        ],
        "test_per_class_recall": winner.per_class_recall,
        "onnx_parity": {
            "samples": parity_result.samples,
            "argmax_agree": parity_result.argmax_agree,
            "max_abs_difference": parity_result.max_abs_difference,
            "onnx_test_accuracy": parity_result.onnx_accuracy,
        },
        "confirmed_label_errors": label_errors,
        "review_log": review,
        "limitations": list(limitations),
    }
    rows = "\n".join(
        f"| {c.name}{' (released)' if c is winner else ''} | {c.validation_accuracy:.4%} | {c.test_accuracy:.4%} | {c.description} |"
        for c in candidates
    )
    recall = "\n".join(f"| {name} | {value:.4f} |" for name, value in winner.per_class_recall.items())
    extra = ""
    if label_errors:
        extra += "\n## Confirmed label errors\n\n" + "\n".join(f"- {key}: {value}" for key, value in label_errors.items()) + "\n"
    if review:
        extra += "\n## Human review\n\n" + "\n".join(f"- {key}: {value}" for key, value in review.items()) + "\n"
    markdown = (
        f"""# {dataset}: released model

{winner.description}. Chosen on validation: {reason}. Release {version}: {contest.summary()}.

- Input `{INPUT}`: uint8 `[batch, {channels}, {image_size}, {image_size}]`, raw pixels (standardization is inside the graph);
  other images are converted as ingest converted the dataset's: {json.dumps(conversion)}.
- Output `{OUTPUT}`: `[batch, {len(classes)}]`, in the order {", ".join(classes)}.
- Data version: {json.dumps(data_version)}; code version {code_version}.
- ONNX against the model on the {parity_result.samples} test samples: {parity_result.argmax_agree} same classes, largest probability
  difference {parity_result.max_abs_difference:.2e}, test accuracy {parity_result.onnx_accuracy:.4%}.

## Candidates (labels in use; excluded samples left out)

| model | validation | test | what it is |
|---|---|---|---|
{rows}

## Per-class recall on test

| class | recall |
|---|---|
{recall}
{extra}
## Limitations

"""
        + "\n".join(f"- {item}" for item in limitations)
        + "\n"
    )
    return card, markdown
