"""Stage 3, validate: strict IDX parsing, then a Great Expectations suite on a per-image summary table.

The data is the whole dataset: the downloaded files, then every ingested drop (tasks/lib/drops.py).

On success it writes `reports/<dataset>/validation.json` and GX Data Docs (`reports/<dataset>/data_docs/`).
On failure it raises DataValidationError listing every failed expectation with the file and a few
offending rows; the report then goes to `reports/<dataset>/failed_validation/` and the last good
report is left as it was.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.common.config import DatasetParams, ValidateParams
from tasks.lib import idx
from tasks.common.errors import DataValidationError
from tasks.common.fileio import atomic_directory
from tasks.common.paths import SPLITS, DatasetPaths
from tasks.lib.drops import read_index, read_split
from tasks.lib.outputs import ValidationSummary, write_record

logger = logging.getLogger(__name__)
_LABEL_COLUMNS = {"label", "label_share", "share_vs_base"}


@dataclass(frozen=True)
class SplitData:
    """One split's parsed arrays and the file each came from, so failures can name it."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    images_file: Path
    labels_file: Path
    # Rows past the base's come from the ingested drops: where the failure line says they are.
    drops_note: str = ""


@dataclass(frozen=True)
class ValidationReport:
    dataset: str
    success: bool
    image_counts: dict[str, int]
    failures: list[str]
    report_file: Path


def load_split(paths: DatasetPaths, split: str) -> SplitData:
    """Parse one split's IDX files (the base's and each drop's) strictly; image and label counts must agree."""
    images, labels = read_split(paths, split)
    drops = read_index(paths).drops
    note = f" and {len(drops)} drop(s) in {paths.ingested_dir}" if drops else ""
    return SplitData(split, images, labels, paths.raw_file(split, "images"), paths.raw_file(split, "labels"), note)


def validate_dataset(paths: DatasetPaths, dataset: DatasetParams, settings: ValidateParams) -> ValidationReport:
    """Validate the raw train and test files; raise DataValidationError (listing every failure) if any fails."""
    # Imported here, not at the top: Great Expectations takes 1.5-2 s to import, which a process that only
    # imports this module (the Prefect flow deciding that nothing changed) should not pay.
    from tasks.lib.expectations import build_expectations, run_suite, summarize_images

    started = time.perf_counter()
    splits = {split: load_split(paths, split) for split in SPLITS}
    grown = bool(read_index(paths).drops)
    summaries = {split: summarize_images(data.images, data.labels,
                                         _base_shares(paths, split, dataset.num_classes) if grown else None)
                 for split, data in splits.items()}
    counts = dataset.expected_counts
    expectations = {split: build_expectations(dataset.num_classes, getattr(counts, split) if counts else None,
                                              settings.class_balance_tolerance, grown) for split in SPLITS}
    failed_dir = paths.failed_validation_dir
    paths.reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".validate-", dir=paths.reports_dir) as scratch_name:
        scratch_dir = Path(scratch_name)
        scratch_docs = scratch_dir / paths.data_docs_dir.name  # laid out as in reports/<dataset>/
        results = run_suite(summaries, expectations, scratch_docs, settings.failed_rows_shown)
        failures = [_failure_line(splits[split], result) for split in SPLITS
                    for result in results[split] if not result["success"]]
        summary = ValidationSummary(paths.dataset, not failures,
                                    {split: len(data.images) for split, data in splits.items()}, results)
        write_record(scratch_dir / paths.validation_file.name, summary)
        if not failures:
            return _publish(paths, scratch_dir, summary, failed_dir, started)
        with atomic_directory(failed_dir) as kept_dir:
            shutil.copytree(scratch_dir, kept_dir, dirs_exist_ok=True)
    total = sum(len(split_results) for split_results in results.values())
    raise DataValidationError(
        f"data validation failed for {paths.dataset}: {len(failures)} of {total} expectations failed:\n  - "
        + "\n  - ".join(failures)
        + f"\nFull report: {failed_dir / paths.validation_file.name}; "
        f"Data Docs: {failed_dir / paths.data_docs_dir.name / paths.data_docs_index.name}"
    )


def _base_shares(paths: DatasetPaths, split: str, num_classes: int) -> np.ndarray:
    """Each class's share of the split in the dataset's base (the downloaded files): the history a grown dataset's
    class balance is judged against."""
    labels = idx.read_labels(paths.raw_file(split, "labels"))
    return np.bincount(labels.astype(np.int64), minlength=num_classes)[:num_classes] / max(len(labels), 1)


def _publish(paths: DatasetPaths, scratch_dir: Path, summary: ValidationSummary, failed_dir: Path,
             started: float) -> ValidationReport:
    """Move a passing report into place (Data Docs swapped in whole, JSON renamed atomically)."""
    with atomic_directory(paths.data_docs_dir) as docs_dir:
        shutil.copytree(scratch_dir / paths.data_docs_dir.name, docs_dir, dirs_exist_ok=True)
    write_record(paths.validation_file, summary)
    shutil.rmtree(failed_dir, ignore_errors=True)
    logger.info("%s: all expectations met for %s images in %.2f s; report %s, Data Docs %s",
                paths.dataset, summary.image_counts, time.perf_counter() - started,
                paths.validation_file, paths.data_docs_index)
    return ValidationReport(paths.dataset, True, summary.image_counts, [], paths.validation_file)


def _failure_line(split: SplitData, result: dict) -> str:
    if result["column"] in _LABEL_COLUMNS:
        where = str(split.labels_file)
    elif result["column"] is None:
        where = f"{split.images_file} + {split.labels_file.name}"
    else:
        where = str(split.images_file)
    line = f"{where}{split.drops_note} [{split.split}]: {result['description']} ({result['expectation']}"
    line += f" on {result['column']})" if result["column"] else ")"
    if result["unexpected_count"]:
        line += (f": {result['unexpected_count']} of {result['element_count']} rows, "
                 f"e.g. rows {result['example_rows']} with values {result['example_values']}")
    elif result["missing_values"]:
        line += f": missing {result['missing_values']}"
    elif result["observed_value"] is not None:
        line += f": found {result['observed_value']}"
    return line


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("validate", argv, lambda paths, params: validate_dataset(
        paths, params.dataset(paths.dataset), params.validate_))


if __name__ == "__main__":
    raise SystemExit(main())
