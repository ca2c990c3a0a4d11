"""Prefect tasks: thin wrappers (retries, logging) over the stage functions in tasks/.

Task names equal the DVC stage names and the module names in tasks/. Each task logs one line with its
duration and outcome and records its wall time for the report (tasks/common/timings.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from orchestration.artifacts import publish_drift, publish_report, training_progress
from tasks.common.config import (DatasetParams, DownloadParams, DriftParams, EvaluateParams, IngestParams,
                                 PromoteParams, TrainParams, ValidateParams)
from tasks.download import DownloadResult, download_dataset
from tasks.drift import check_drift
from tasks.common.errors import ChecksumError, ConfigError, DownloadError, DriftBlockedError, InsecureURLError
from tasks.evaluate import evaluate_model
from tasks.ingest import IngestResult, ingest_inbox
from tasks.normalize import NormalizeResult, normalize_dataset
from tasks.lib.outputs import DriftReport, Evaluation, PromotionDecision
from tasks.common.paths import DatasetPaths
from tasks.promote import promote_model
from tasks.report import write_report
from tasks.common.timings import timed_stage
from tasks.train import TrainResult, train_model
from tasks.validate import ValidationReport, validate_dataset

# Retrying cannot fix these: a bad setting, a refused URL or data that is not what it claims to be.
_DETERMINISTIC_FAILURES = (ConfigError, InsecureURLError, ChecksumError)


def _is_transient(task, task_run, state) -> bool:
    """Retry a failed download unless the cause is deterministic."""
    try:
        state.result(raise_on_failure=True)
    except _DETERMINISTIC_FAILURES:
        return False
    except DownloadError as error:
        return error.transient
    except Exception:  # noqa: BLE001 (anything else may be a passing network fault)
        return True
    return False


def _timed(paths: DatasetPaths, stage: str):
    return timed_stage(paths, stage, "prefect", get_run_logger().info)


@task(name="download", retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=_is_transient,
      cache_policy=NO_CACHE)
def download(paths: DatasetPaths, dataset: DatasetParams, settings: DownloadParams) -> DownloadResult:
    with _timed(paths, "download"):
        result = download_dataset(paths, dataset, settings)
    for file_name, source in result.source_by_file.items():
        get_run_logger().info("%s: %s", file_name, source)
    return result


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(paths: DatasetPaths, dataset: DatasetParams, settings: IngestParams) -> IngestResult:
    with _timed(paths, "ingest"):
        result = ingest_inbox(paths, dataset, settings)
    logger = get_run_logger()
    if result.drop:
        logger.info("drop %s: added %s; %d duplicate(s), %d leakage, %d quarantined", result.drop, result.added,
                    len(result.duplicates), len(result.leakage), len(result.quarantined))
    elif result.refused:
        logger.info("%s; the dataset is unchanged", result.refusal())
    for line in result.duplicates + result.leakage + result.quarantined:
        logger.warning("refused %s", line)
    if result.waiting:
        logger.info("%d file(s) still arriving, left for the next run", len(result.waiting))
    return result


@task(name="validate", cache_policy=NO_CACHE)
def validate(paths: DatasetPaths, dataset: DatasetParams, settings: ValidateParams) -> ValidationReport:
    with _timed(paths, "validate"):
        report = validate_dataset(paths, dataset, settings)
    get_run_logger().info("all expectations met for %s images; Data Docs: %s", report.image_counts,
                          paths.data_docs_index)
    return report


@task(name="drift", cache_policy=NO_CACHE)
def drift(paths: DatasetPaths, dataset: DatasetParams, settings: DriftParams) -> DriftReport:
    try:
        with _timed(paths, "drift"):
            report = check_drift(paths, dataset, settings)
    except DriftBlockedError:  # the comparison is what the person who has to decide needs to see
        publish_drift(paths)
        raise
    publish_drift(paths)
    (get_run_logger().warning if report.drifted else get_run_logger().info)(report.outcome)
    return report


@task(name="normalize", cache_policy=NO_CACHE)
def normalize(paths: DatasetPaths) -> NormalizeResult:
    with _timed(paths, "normalize"):
        return normalize_dataset(paths)


@task(name="train", cache_policy=NO_CACHE)
def train(paths: DatasetPaths, params: TrainParams) -> TrainResult:
    progress = training_progress(paths.dataset, params.epochs)
    with _timed(paths, "train"):
        result = train_model(paths, params, extra_callbacks=[progress.callback()])
    summary = result.summary
    progress.finish(summary.stop_epoch, summary.stopped_by_threshold)
    get_run_logger().info("stopped at epoch %d (%s) after %.1f s of training", summary.stop_epoch,
                          "threshold reached" if summary.stopped_by_threshold else "epoch limit", result.train_seconds)
    return result


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(paths: DatasetPaths, dataset: DatasetParams) -> Evaluation:
    with _timed(paths, "evaluate"):
        result = evaluate_model(paths, dataset)
    get_run_logger().info("test accuracy %.4f, test loss %.4f", result.metrics.test_accuracy, result.metrics.test_loss)
    return result


@task(name="promote", cache_policy=NO_CACHE)
def promote(paths: DatasetPaths, dataset: DatasetParams, settings: PromoteParams) -> PromotionDecision:
    with _timed(paths, "promote"):
        decision = promote_model(paths, dataset, settings)
    get_run_logger().info(decision.reason)
    return decision


@task(name="report", cache_policy=NO_CACHE)
def report(paths: DatasetPaths, dataset: DatasetParams, settings: EvaluateParams) -> Path:
    with _timed(paths, "report"):
        page = write_report(paths, dataset, settings)
    publish_report(paths, dataset.class_names)
    get_run_logger().info("run report: %s", page)
    return page
