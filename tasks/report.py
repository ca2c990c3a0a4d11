"""Stage 7, report: one self-contained page per run, `reports/<dataset>/index.html`.

Answers "is this model good, where does it fail, and was the data sound?" from the files the earlier stages
wrote: headline metrics and the promotion decision, confusion matrices, per-class scores, training curves,
the most confident mistakes, the data validation summary (linking to the GX Data Docs) and a run card.
Images are inlined as data URIs: the page opens anywhere, offline, with no other file. The counts heatmap
and the grid of mistakes are also written as PNG files (`confusion_matrix.png`, `misclassified.png`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from tasks.common.paths import STAGES
from tasks.common.config import DatasetParams, EvaluateParams
from tasks.common.errors import PipelineError
from tasks.common.fileio import sha256_of_file, write_bytes_atomic, write_text_atomic
from tasks.lib.inference import load_network
from tasks.normalize import load_split
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tasks.lib.report_html import Mistake, ReportPage, RunCard, render_page
from tasks.common.timings import read_timings
from tasks.train import HISTORY_COLUMNS
from tasks.common.startup import exit_process

logger = logging.getLogger(__name__)
METRICS_KEYS = ("test_accuracy", "test_loss", "stop_epoch", "test_images", "per_class", "confusion_matrix")
TRAINING_KEYS = ("stop_epoch", "stopped_by_threshold", "monitor", "threshold", "validation_images", "params")
VALIDATION_KEYS = ("success", "image_counts", "splits")
PROMOTION_KEYS = ("promoted", "reason", "gates")
LIBRARIES = ("tensorflow", "keras", "numpy", "scikit-learn", "great-expectations", "prefect", "dvc", "matplotlib")


class ReportInputError(PipelineError, ValueError):
    """A file the report is built from is missing or unreadable."""


def required_inputs(paths: DatasetPaths) -> list[tuple[Path, str]]:
    """Every file the report reads, with the stage that writes it (promotion.json is optional)."""
    raw = [(paths.raw_file(split, kind), "download") for split, kind in IDX_FILE_NAMES]
    return raw + [(paths.validation_file, "validate"), (paths.processed_file("test"), "normalize"),
                  (paths.model_file, "train"), (paths.training_summary_file, "train"),
                  (paths.training_history_file, "train"), (paths.metrics_file, "evaluate")]


def check_inputs(paths: DatasetPaths) -> None:
    missing = [f"{path} (written by the {stage} stage)" for path, stage in required_inputs(paths) if not path.is_file()]
    if missing:
        raise ReportInputError(f"cannot write {paths.report_file}: missing " + "; ".join(missing)
                               + f". Run the earlier stages first (dvc repro report@{paths.dataset}).")


def read_json(path: Path, keys: tuple[str, ...]) -> dict:
    """A JSON object holding at least `keys`, or a ReportInputError naming the file and what is missing."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportInputError(f"{path}: not valid JSON ({error}); re-run the stage that writes it") from None
    if not isinstance(document, dict):
        raise ReportInputError(f"{path}: expected a JSON object, found {type(document).__name__}")
    missing = [key for key in keys if key not in document]
    if missing:
        raise ReportInputError(f"{path}: missing keys {missing} (found {sorted(document)}); "
                               "re-run the stage that writes it")
    return document


def read_history(path: Path) -> dict[str, list[float]]:
    """training_history.csv as columns: {"epoch": [1, 2, ...], "loss": [...], ...}."""
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in HISTORY_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ReportInputError(f"{path}: missing columns {missing}; expected {list(HISTORY_COLUMNS)}, "
                                   f"found {reader.fieldnames}")
        rows = list(reader)
    columns: dict[str, list[float]] = {column: [] for column in HISTORY_COLUMNS}
    for line_number, row in enumerate(rows, start=2):
        try:
            for column in HISTORY_COLUMNS:
                columns[column].append(float(row[column]))
        except (TypeError, ValueError):
            raise ReportInputError(f"{path}, line {line_number}: expected numbers in {list(HISTORY_COLUMNS)}, "
                                   f"found {row}") from None
    if not rows:
        raise ReportInputError(f"{path}: no epochs recorded (header only)")
    return columns


def confusion_matrix_of(metrics: dict, path: Path, class_count: int) -> np.ndarray:
    matrix = np.asarray(metrics["confusion_matrix"])
    if matrix.shape != (class_count, class_count) or not np.issubdtype(matrix.dtype, np.integer):
        raise ReportInputError(f"{path}: confusion_matrix should be {class_count}x{class_count} integer counts "
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


def git_commit(root: Path) -> str:
    try:
        completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                   timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown (git: {error})"
    return completed.stdout.strip() if completed.returncode == 0 else "unknown (not a git checkout)"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_run_card(paths: DatasetPaths, training: dict, validation: dict) -> RunCard:
    checksums = {name: sha256_of_file(paths.raw_file(split, kind)) for (split, kind), name in IDX_FILE_NAMES.items()}
    counts = {**validation["image_counts"], "validation (held out of train)": training["validation_images"]}
    timings = read_timings(paths, [stage for stage in STAGES if stage != "report"])
    return RunCard(paths.dataset, checksums, counts, training["params"], training["params"]["seed"],
                   git_commit(paths.root), library_versions(), timings,
                   datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_report(paths: DatasetPaths, dataset: DatasetParams, settings: EvaluateParams) -> Path:
    """Write `reports/<dataset>/index.html` from the earlier stages' outputs; return its path.

    Raises ReportInputError naming any missing or malformed input file.
    """
    # Imported here, not at the top: matplotlib is only needed once a page is drawn (a no-op flow run never does).
    from tasks.lib.report_figures import (confusion_heatmap_png, data_uri, misclassified_grid_png, thumbnail_png,
                                      training_curves_png)

    check_inputs(paths)
    metrics = read_json(paths.metrics_file, METRICS_KEYS)
    training = read_json(paths.training_summary_file, TRAINING_KEYS)
    validation = read_json(paths.validation_file, VALIDATION_KEYS)
    promotion = read_json(paths.promotion_file, PROMOTION_KEYS) if paths.promotion_file.is_file() else None
    history = read_history(paths.training_history_file)
    matrix = confusion_matrix_of(metrics, paths.metrics_file, len(dataset.class_names))
    images, labels = load_split(paths.processed_file("test"))
    probabilities = load_network(paths.model_file).predict(images, verbose=0, batch_size=1024)
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
               "curves": data_uri(training_curves_png(history, training["stop_epoch"],
                                                      training["stopped_by_threshold"], training["monitor"],
                                                      training["threshold"]))}
    data_docs_link = os.path.relpath(paths.data_docs_dir / "index.html", paths.reports_dir)
    page = ReportPage(paths.dataset, metrics, promotion, training, figures, mistakes, validation, data_docs_link,
                      build_run_card(paths, training, validation))
    write_text_atomic(paths.report_file, render_page(page))
    logger.info("%s: report with %d mistakes shown -> %s", paths.dataset, len(mistakes), paths.report_file)
    return paths.report_file


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("report", argv, lambda paths, params: write_report(
        paths, params.dataset(paths.dataset), params.evaluate))


if __name__ == "__main__":
    exit_process(main())
