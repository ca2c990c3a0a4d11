"""Stage 5, evaluate: test loss and accuracy, confusion matrix (labels 0..9), per-class report with class names.

Writes `metrics.json` (DVC metrics), `predictions.csv` (DVC confusion plot) and the test predictions under
`reports/<dataset>/`. Pictures of these numbers are drawn by the report stage.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import numpy as np

from tasks.common.config import NUM_CLASSES, DatasetParams
from tasks.common.fileio import write_json_atomic, write_text_atomic
from tasks.normalize import load_split
from tasks.common.paths import DatasetPaths
from tasks.lib.inference import load_network, sparse_categorical_crossentropy
from tasks.lib.predictions import save_predictions, test_set_fingerprint
from tasks.common.startup import exit_process

logger = logging.getLogger(__name__)
CLASS_LABELS = list(range(NUM_CLASSES))


@dataclass(frozen=True)
class EvaluationResult:
    dataset: str
    test_accuracy: float
    test_loss: float
    confusion_matrix: list[list[int]]
    per_class: dict[str, dict[str, float]]
    stop_epoch: int | None


def summarize_predictions(true_labels: np.ndarray, predicted_labels: np.ndarray, class_names: tuple[str, ...]):
    """Confusion matrix over all 10 classes (rows: actual, columns: predicted) and a per-class report, even
    when a class is absent from the test set (its scores are then 0).

    Computed with NumPy: the numbers equal scikit-learn's `confusion_matrix` and `classification_report`
    with `zero_division=0` (tests/tasks/test_evaluate.py checks it), without the 0.8 s import of sklearn.
    """
    _check_labels(true_labels, predicted_labels)
    codes = true_labels.astype(np.int64) * NUM_CLASSES + predicted_labels.astype(np.int64)
    matrix = np.bincount(codes, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    correct, support, predicted_count = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _share(correct, predicted_count)
    recall = _share(correct, support)
    f1 = _share(2 * correct, support + predicted_count)  # 2 tp / (2 tp + fp + fn)
    per_class = {name: {"precision": float(precision[index]), "recall": float(recall[index]),
                        "f1": float(f1[index]), "support": int(support[index])}
                 for index, name in enumerate(class_names)}
    return matrix, per_class


def _check_labels(true_labels: np.ndarray, predicted_labels: np.ndarray) -> None:
    if true_labels.ndim != 1 or true_labels.shape != predicted_labels.shape:
        raise ValueError(f"true and predicted labels must be 1-D arrays of one length; found shapes "
                         f"{true_labels.shape} and {predicted_labels.shape}")
    for name, values in (("true label", true_labels), ("predicted label", predicted_labels)):
        if not np.issubdtype(values.dtype, np.integer):
            raise TypeError(f"{name}s must be integers in 0..{NUM_CLASSES - 1}; found dtype {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= NUM_CLASSES):
            raise ValueError(f"{name}s must be integers in 0..{NUM_CLASSES - 1}; found {values.min()}..{values.max()}")


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def evaluate_model(paths: DatasetPaths, dataset: DatasetParams) -> EvaluationResult:
    """Evaluate `models/<dataset>/model.keras` on the test split and write the reports.

    The model is run by `tasks.lib.inference` (NumPy for the pipeline's dense models, Keras otherwise)."""
    model = load_network(paths.model_file)
    images, labels = load_split(paths.processed_file("test"))
    probabilities = model.predict(images, verbose=0, batch_size=1024)
    predicted = probabilities.argmax(axis=1).astype(np.uint8)
    test_loss = sparse_categorical_crossentropy(probabilities, labels)
    test_accuracy = float(np.mean(predicted == labels))
    save_predictions(paths.test_predictions_file, predicted, test_set_fingerprint(images, labels))
    matrix, per_class = summarize_predictions(labels, predicted, dataset.class_names)
    stop_epoch = _stop_epoch(paths)
    result = EvaluationResult(paths.dataset, float(test_accuracy), float(test_loss), matrix.tolist(), per_class,
                              stop_epoch)
    write_json_atomic(paths.metrics_file, {
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss, "stop_epoch": stop_epoch,
        "test_images": int(len(labels)), "per_class": per_class, "confusion_matrix": result.confusion_matrix,
    })
    write_text_atomic(paths.predictions_file, _predictions_csv(labels, predicted, dataset.class_names))
    logger.info("%s: test accuracy %.4f, loss %.4f on %d images; metrics -> %s", paths.dataset, test_accuracy,
                test_loss, len(labels), paths.metrics_file)
    return result


def _stop_epoch(paths: DatasetPaths) -> int | None:
    if not paths.training_summary_file.exists():
        return None
    return json.loads(paths.training_summary_file.read_text())["stop_epoch"]


def _predictions_csv(true_labels: np.ndarray, predicted_labels: np.ndarray, class_names: tuple[str, ...]) -> str:
    names = np.asarray(class_names, dtype=object)
    buffer = io.StringIO()
    buffer.write("actual,predicted\n")
    for actual, predicted in zip(names[true_labels], names[predicted_labels]):
        buffer.write(f"{_csv_field(actual)},{_csv_field(predicted)}\n")
    return buffer.getvalue()


def _csv_field(text: str) -> str:
    return f'"{text}"' if "," in text or '"' in text else text


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("evaluate", argv, lambda paths, params: evaluate_model(
        paths, params.dataset(paths.dataset)))


if __name__ == "__main__":
    exit_process(main())
