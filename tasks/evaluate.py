"""Stage 5, evaluate: test loss and accuracy, confusion matrix over every class, per-class report with class names.

Writes `metrics.json` (DVC metrics: numbers only), `class_scores.json` (confusion matrix, per-class report),
`predictions.csv` (DVC confusion plot) and the test set's probabilities and
predicted labels (`test_predictions.npz`, which promote and report read instead of running the model again) under
`reports/<dataset>/`. Pictures of these numbers are drawn by the report stage.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from tasks.common.config import DatasetParams
from tasks.common.fileio import write_text_atomic
from tasks.common.paths import DatasetPaths
from tasks.lib.inference import load_network, sparse_categorical_crossentropy
from tasks.lib.outputs import ClassScores, Evaluation, Metrics, TrainingSummary, load_split, read_record, write_record
from tasks.lib.predictions import save_predictions, test_set_fingerprint
from tasks.lib.scores import summarize_predictions

logger = logging.getLogger(__name__)


def evaluate_model(paths: DatasetPaths, dataset: DatasetParams) -> Evaluation:
    """Evaluate `models/<dataset>/model.onnx` (the trained model, exported for ONNX Runtime by the train stage) on
    the test split and write the reports."""
    model = load_network(paths.runtime_model_file)
    images, labels = load_split(paths.processed_file("test"))
    probabilities = model.predict(images, verbose=0, batch_size=1024)
    predicted = probabilities.argmax(axis=1).astype(np.uint8)
    test_loss = sparse_categorical_crossentropy(probabilities, labels)
    test_accuracy = float(np.mean(predicted == labels))
    save_predictions(paths.test_predictions_file, predicted, test_set_fingerprint(images, labels), probabilities)
    matrix, per_class = summarize_predictions(labels, predicted, dataset.class_names)
    metrics = Metrics(float(test_accuracy), float(test_loss), _stop_epoch(paths), int(len(labels)))
    class_scores = ClassScores(per_class, matrix.tolist())
    write_record(paths.class_scores_file, class_scores)
    write_record(paths.metrics_file, metrics)
    write_text_atomic(paths.predictions_file, _predictions_csv(labels, predicted, dataset.class_names))
    logger.info("%s: test accuracy %.4f, loss %.4f on %d images; metrics -> %s", paths.dataset, test_accuracy,
                test_loss, len(labels), paths.metrics_file)
    return Evaluation(metrics, class_scores)


def _stop_epoch(paths: DatasetPaths) -> int | None:
    if not paths.training_summary_file.exists():
        return None
    return read_record(paths.training_summary_file, TrainingSummary).stop_epoch


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
    raise SystemExit(main())
