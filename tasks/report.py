"""Stage 7, report: one self-contained page per run, `reports/<dataset>/index.html`.

Answers "is this model good, where does it fail, and was the data sound?" from the files the earlier stages
wrote: headline metrics and the promotion decision, confusion matrices, per-class scores, training curves,
the most confident mistakes, the data validation summary (linking to the GX Data Docs), the drift check and a run card,
and a slot for the run log (when, wall times, history), which is local state beside the page (tasks/lib/run_log.py).
Images are inlined as data URIs: the page opens anywhere, offline, with no other file. The counts heatmap
and the grid of mistakes are also written as PNG files (`confusion_matrix.png`, `misclassified.png`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np

from tasks.common.config import DatasetParams, EvaluateParams
from tasks.common.errors import OutputFileError
from tasks.common.fileio import sha256_of_file, write_bytes_atomic, write_text_atomic
from tasks.lib.predictions import load_probabilities, test_set_fingerprint
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tasks.lib.outputs import (ClassScores, DriftReport, Metrics, PromotionDecision, TrainingSummary, ValidationSummary,
                               load_split, read_history, read_record)
from tasks.lib.report_html import Mistake, ReportPage, RunCard, render_page
from tasks.lib.run_log import write_run_log

logger = logging.getLogger(__name__)
LIBRARIES = ("tensorflow", "keras", "onnxruntime", "numpy", "scikit-learn", "great-expectations", "prefect", "dvc",
             "matplotlib")


def required_inputs(paths: DatasetPaths) -> list[tuple[Path, str]]:
    """Every file the report reads, with the stage that writes it (promotion.json is optional)."""
    raw = [(paths.raw_file(split, kind), "download") for split, kind in IDX_FILE_NAMES]
    return raw + [(paths.validation_file, "validate"), (paths.drift_file, "drift"),
                  (paths.processed_file("test"), "normalize"), (paths.training_summary_file, "train"),
                  (paths.training_history_file, "train"), (paths.metrics_file, "evaluate"),
                  (paths.class_scores_file, "evaluate"), (paths.test_predictions_file, "evaluate")]


def check_inputs(paths: DatasetPaths) -> None:
    missing = [f"{path} (written by the {stage} stage)" for path, stage in required_inputs(paths) if not path.is_file()]
    if missing:
        raise OutputFileError(f"cannot write {paths.report_file}: missing " + "; ".join(missing)
                               + f". Run the earlier stages first (dvc repro report@{paths.dataset}).")


def confusion_matrix_of(class_scores: ClassScores, path: Path, class_count: int) -> np.ndarray:
    matrix = np.asarray(class_scores.confusion_matrix)
    if matrix.shape != (class_count, class_count) or not np.issubdtype(matrix.dtype, np.integer):
        raise OutputFileError(f"{path}: confusion_matrix should be {class_count}x{class_count} integer counts "
                               f"(one row and column per class name), found shape {matrix.shape} of {matrix.dtype}")
    return matrix


def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                            count: int) -> list[Mistake]:
    """Misclassified rows, the highest predicted probability first (ties by row), at most `count`."""
    predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    return [Mistake(int(row), class_names[labels[row]], class_names[predicted[row]], float(confidence[row]))
            for row in ranked]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_run_card(paths: DatasetPaths, training: TrainingSummary, validation: ValidationSummary) -> RunCard:
    checksums = {name: sha256_of_file(paths.raw_file(split, kind)) for (split, kind), name in IDX_FILE_NAMES.items()}
    counts = {**validation.image_counts, "validation (held out of train)": training.validation_images}
    return RunCard(paths.dataset, checksums, counts, training.params, training.params["seed"], library_versions(),
                   training.device)


def write_report(paths: DatasetPaths, dataset: DatasetParams, settings: EvaluateParams) -> Path:
    """Write `reports/<dataset>/index.html` from the earlier stages' outputs; return its path.

    Raises OutputFileError naming any missing or malformed input file.
    """
    # Imported here, not at the top: matplotlib is only needed once a page is drawn (a no-op flow run never does).
    from tasks.lib.report_figures import (confusion_heatmap_png, data_uri, misclassified_grid_png, thumbnail_png,
                                      training_curves_png)

    check_inputs(paths)
    metrics = read_record(paths.metrics_file, Metrics)
    class_scores = read_record(paths.class_scores_file, ClassScores)
    training = read_record(paths.training_summary_file, TrainingSummary)
    validation = read_record(paths.validation_file, ValidationSummary)
    drift = read_record(paths.drift_file, DriftReport)
    promotion = read_record(paths.promotion_file, PromotionDecision) if paths.promotion_file.is_file() else None
    history = read_history(paths.training_history_file)
    matrix = confusion_matrix_of(class_scores, paths.class_scores_file, len(dataset.class_names))
    images, labels = load_split(paths.processed_file("test"))
    probabilities = load_probabilities(paths.test_predictions_file, test_set_fingerprint(images, labels))
    if probabilities is None or probabilities.shape != (len(labels), len(dataset.class_names)):
        raise OutputFileError(f"{paths.test_predictions_file}: no probabilities for this test set and its "
                              f"{len(dataset.class_names)} classes; run the evaluate stage first "
                              f"(dvc repro evaluate@{paths.dataset})")
    mistakes = [replace(mistake, thumbnail=data_uri(thumbnail_png(images[mistake.index])))
                for mistake in most_confident_mistakes(probabilities, labels, dataset.class_names,
                                                       settings.misclassified_shown)]
    confusion_counts_png = confusion_heatmap_png(matrix, dataset.class_names, normalized=False)
    write_bytes_atomic(paths.confusion_matrix_png, confusion_counts_png)
    shown = [mistake.index for mistake in mistakes]
    write_bytes_atomic(paths.misclassified_png, misclassified_grid_png(
        images[shown], [mistake.true_class for mistake in mistakes], [mistake.predicted_class for mistake in mistakes]))
    figures = {"confusion_counts": data_uri(confusion_counts_png),
               "confusion_normalized": data_uri(confusion_heatmap_png(matrix, dataset.class_names, normalized=True)),
               "curves": data_uri(training_curves_png(history, training.stop_epoch, training.stopped_by_threshold,
                                                      training.monitor, training.threshold))}
    data_docs_link = os.path.relpath(paths.data_docs_index, paths.reports_dir)
    drops = (json.loads(paths.ingest_summary_file.read_text(encoding="utf-8"))["drops"]
             if paths.ingest_summary_file.is_file() else None)
    page = ReportPage(paths.dataset, metrics, class_scores, promotion, training, figures, mistakes, validation,
                      data_docs_link, drift, build_run_card(paths, training, validation), drops)
    write_text_atomic(paths.report_file, render_page(page))
    write_run_log(paths)  # what differs from run to run: beside the page, not in it (tasks/lib/run_log.py)
    logger.info("%s: report with %d mistakes shown -> %s", paths.dataset, len(mistakes), paths.report_file)
    return paths.report_file


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("report", argv, lambda paths, params: write_report(
        paths, params.dataset(paths.dataset), params.evaluate))


if __name__ == "__main__":
    raise SystemExit(main())
