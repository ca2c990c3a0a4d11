"""The files one stage writes and later stages read, each with one typed writer and one reader.

A stage never opens another stage's file by hand and never imports another stage to read it: the processed
splits, `validation.json`, `training.json`, `training_history.csv`, `metrics.json` and `promotion.json` are read
and written here. A reader refuses a file that is not what its writer writes, naming the file and what is
missing, with OutputFileError.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from tasks.common.errors import DataValidationError, OutputFileError
from tasks.common.fileio import atomic_path, load_arrays, write_json_atomic, write_text_atomic
from tasks.lib.geometry import IMAGE_SHAPE

# Data already divided by 255 has a maximum of at most 1/255: a sign it was normalized twice.
# The margin covers float32 rounding (255 / 255 / 255 in float32 is a hair above 1/255 in float64).
_TWICE_NORMALIZED_MAX = 1.0 / 255.0 + 1e-6
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
Record = TypeVar("Record")


# ---- data/processed/<dataset>/{train,test}.npz (normalize) ----

def check_normalized(images: np.ndarray, labels: np.ndarray, source: Path | str) -> None:
    """Refuse NaN, values outside [0, 1], float data normalized twice, wrong shapes or mismatched labels."""
    problems = []
    if images.dtype != np.float32:
        problems.append(f"dtype {images.dtype} where float32 was expected")
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        problems.append(f"shape {images.shape} where (count, {', '.join(map(str, IMAGE_SHAPE))}) was expected")
    if len(labels) != len(images):
        problems.append(f"{len(images)} images but {len(labels)} labels")
    if images.size:
        nan_rows = np.flatnonzero(np.isnan(images.reshape(len(images), -1)).any(axis=1))
        if nan_rows.size:
            problems.append(f"NaN in {nan_rows.size} images, e.g. rows {nan_rows[:5].tolist()}")
        low, high = float(np.nanmin(images)), float(np.nanmax(images))
        if low < 0 or high > 1:
            problems.append(f"values in [{low:g}, {high:g}] where [0, 1] was expected")
        elif 0 < high <= _TWICE_NORMALIZED_MAX:
            problems.append(f"max value {high:g} <= 1/255: the data looks normalized twice")
    if problems:
        raise DataValidationError(f"{source}: normalized data failed its checks: " + "; ".join(problems))


def save_split(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as stream:
            np.savez(stream, images=images, labels=labels)


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load a normalized split (pickle refused) and check it again."""
    arrays = load_arrays(path, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    check_normalized(images, labels, path)
    return images, labels


# ---- JSON records ----

def write_record(path: Path, record: Any, **extra: Any) -> None:
    """Write a record dataclass (and `extra` keys) as a JSON object, atomically."""
    write_json_atomic(path, {**dataclasses.asdict(record), **extra})


def read_record(path: Path, kind: type[Record]) -> Record:
    """The record of type `kind` in `path`; OutputFileError naming the file if it is missing, not JSON or
    lacks a field (keys the record does not know are ignored)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputFileError(f"{path}: missing; run the stage that writes it") from None
    except json.JSONDecodeError as error:
        raise OutputFileError(f"{path}: not valid JSON ({error}); re-run the stage that writes it") from None
    if not isinstance(document, dict):
        raise OutputFileError(f"{path}: expected a JSON object, found {type(document).__name__}")
    fields = [field.name for field in dataclasses.fields(cast(Any, kind))]
    required = [field.name for field in dataclasses.fields(cast(Any, kind))
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in document]
    if missing:
        raise OutputFileError(f"{path}: missing keys {missing} (found {sorted(document)}); "
                              "re-run the stage that writes it")
    return kind(**{name: document[name] for name in fields if name in document})


@dataclass(frozen=True)
class ValidationSummary:
    """reports/<dataset>/validation.json (validate)."""

    dataset: str
    success: bool
    image_counts: dict[str, int]
    splits: dict[str, list[dict]]


@dataclass(frozen=True)
class DriftReport:
    """reports/<dataset>/drift.json (drift): the data compared with the data the champion learned from."""

    dataset: str
    action: str
    reference: str  # what the data was compared with, in words
    reference_parts: list[str]
    parts: list[str]
    images: dict[str, int]
    reference_images: dict[str, int]
    measures: list[dict]  # {split, statistic, measure, value, threshold, drifted}
    drifted: bool
    accepted: dict | None  # {accepted_at, by, reason} when an acceptance covers the drift
    blocked: bool
    outcome: str


@dataclass(frozen=True)
class TrainingSummary:
    """reports/<dataset>/training.json (train): how training ended and the settings it ran with."""

    dataset: str
    stop_epoch: int
    stopped_by_threshold: bool
    monitor: str
    threshold: float
    final_metrics: dict[str, float]
    train_images: int
    validation_images: int
    model_file: str  # relative to the repository root, so the DVC-tracked summary is the same in every clone
    params: dict[str, Any]
    device: str = "not recorded"  # what trained: "CPU" or "GPU <name>" (tasks/lib/device.py)


@dataclass(frozen=True)
class TrainingMetrics:
    """reports/<dataset>/training_metrics.json (train; a DVC metrics file): the validation figures that choose
    settings (a sweep ranks its trials by them), never the test split's."""

    val_accuracy: float
    val_loss: float
    stop_epoch: int
    validation_images: int


@dataclass(frozen=True)
class Metrics:
    """reports/<dataset>/metrics.json (evaluate; the DVC metrics file): the numbers a person compares across runs,
    and nothing else. `dvc metrics show`, `dvc metrics diff` and `dvc exp show` make a column of every key."""

    test_accuracy: float
    test_loss: float
    stop_epoch: int | None
    test_images: int


@dataclass(frozen=True)
class ClassScores:
    """reports/<dataset>/class_scores.json (evaluate; not a DVC metrics file: for 10 classes it would add 140
    columns): the confusion matrix (rows: actual, columns: predicted) and per-class precision, recall, F1 and
    support."""

    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage wrote: metrics.json and class_scores.json."""

    metrics: Metrics
    class_scores: ClassScores


@dataclass(frozen=True)
class McNemarResult:
    champion_only_correct: int
    challenger_only_correct: int
    p_value: float
    significant: bool


@dataclass(frozen=True)
class RolledBackModel:
    """A champion `make rollback` replaced (versioning/rollback.py): promote never promotes these bytes again."""

    model_md5: str  # of model.keras, as dvc.lock and `make history` show it
    rolled_back_at: str
    by: str
    to_commit: str
    reason: str


@dataclass(frozen=True)
class RolledBackModels:
    """models/<dataset>/production/rolled_back.json: carried from champion to champion."""

    models: list[RolledBackModel]

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", [model if isinstance(model, RolledBackModel) else RolledBackModel(**model)
                                            for model in self.models])

    def find(self, model_md5: str) -> RolledBackModel | None:
        return next((model for model in self.models if model.model_md5 == model_md5), None)


@dataclass(frozen=True)
class PromotionDecision:
    """reports/<dataset>/promotion.json (promote): whether the challenger replaced the champion, and why."""

    dataset: str
    promoted: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    accuracy_delta: float | None
    recall_deltas: dict[str, float]
    gates: list[dict]
    mcnemar: McNemarResult | None

    def __post_init__(self) -> None:
        if isinstance(self.mcnemar, dict):  # as read back from JSON
            object.__setattr__(self, "mcnemar", McNemarResult(**self.mcnemar))


# ---- reports/<dataset>/training_history.csv (train; a DVC plot) ----

def write_history(path: Path, history: dict[str, list[float]]) -> None:
    """One row per epoch: the epoch number, then each metric Keras logged (HISTORY_COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for epoch in range(len(history["loss"])):
        writer.writerow([epoch + 1] + [f"{history[name][epoch]:.6f}" for name in HISTORY_COLUMNS[1:]])
    write_text_atomic(path, buffer.getvalue())


def read_history(path: Path) -> dict[str, list[float]]:
    """training_history.csv as columns: {"epoch": [1, 2, ...], "loss": [...], ...}."""
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in HISTORY_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise OutputFileError(f"{path}: missing columns {missing}; expected {list(HISTORY_COLUMNS)}, "
                                  f"found {reader.fieldnames}")
        rows = list(reader)
    columns: dict[str, list[float]] = {column: [] for column in HISTORY_COLUMNS}
    for line_number, row in enumerate(rows, start=2):
        try:
            for column in HISTORY_COLUMNS:
                columns[column].append(float(row[column]))
        except (TypeError, ValueError):
            raise OutputFileError(f"{path}, line {line_number}: expected numbers in {list(HISTORY_COLUMNS)}, "
                                  f"found {row}") from None
    if not rows:
        raise OutputFileError(f"{path}: no epochs recorded (header only)")
    return columns
