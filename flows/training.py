"""The training pipeline as a Prefect flow: download -> ingest -> validate -> drift -> normalize -> train -> evaluate
-> promote -> report.

Every run re-checks the data (download verifies checksums) and ingests the inbox. When DVC says nothing changed
since the last successful run (data, params and code), the run stops there and says so; `force=True` retrains
anyway. When drift blocks training (drift.action: block), the new data version is recorded (and committed, as a
finished run's would be) and the run fails, so that a person hears of it.
Run it locally without a server: `python -m flows.training --dataset mnist-sample`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.stages import download, drift, evaluate, ingest, normalize, promote, report, train, validate
from orchestration.artifacts import publish_results, publish_skip
from orchestration.deployment_run import RESULT_PREFIX
from orchestration.log_filters import quiet_pipeline_errors
from orchestration.runs import read_last_run, write_last_run
from orchestration.serve import terminal_api
from orchestration.service import deliver_queued_events, detach_from_worker
from versioning.commits import commit_run
from versioning.dvc_state import changed_stages, pipeline_held, record_outputs
from versioning.remote import is_remote_run, release_fetched
from versioning.remote import prepare as prepare_remote_run
from tasks.check_params import link_sources, write_marker
from tasks.common.config import DatasetName, Params, load_params, write_overrides
from tasks.common.errors import DriftBlockedError, PipelineError, StageFailedError, StageInterrupted
from tasks.lib.outputs import Evaluation, PromotionDecision
from tasks.common.paths import PARAMS_CHECK_FILE, PARAMS_FILE, STAGES, DatasetPaths

FLOW_NAME = "training-pipeline"
quiet_pipeline_errors()  # a PipelineError is logged as its one line, not with Prefect's traceback
# A deployment's run (scheduled, triggered by new data, or started by hand) waits this long for a run of the same
# dataset outside Prefect (`dvc repro`, `make flow`) to finish, instead of failing on the pipeline lock. Runs of
# the deployment itself never overlap: its concurrency limit queues them (orchestration/deployments.py).
DEPLOYMENT_LOCK_WAIT_SECONDS = 3600


@dataclass(frozen=True)
class PipelineOutcome:
    dataset: str
    skipped: bool
    message: str
    evaluation: Evaluation | None = None
    promotion: PromotionDecision | None = None


@flow(name=FLOW_NAME, log_prints=True)
def training_pipeline(dataset: DatasetName = "fashion-mnist", params_file: str = PARAMS_FILE,
                      overrides: dict[str, Any] | None = None, force: bool = False,
                      root: str | None = None) -> PipelineOutcome:
    """Run the stages for `dataset`, publish artifacts and record the outputs in DVC.

    `overrides` sets dotted params.yaml keys for this run only, params.yaml unchanged: they go to the dataset's
    overrides file (DatasetPaths.overrides_file), which its stages read and dvc.lock records, and which holds `{}`
    again when the run ends (or when the dataset's next run starts, if this one was killed). `force` retrains even
    when nothing changed.
    `root` is the repository root (default: the current directory).
    """
    from prefect.runtime import deployment

    if deployment.id and (output := detach_from_worker()):  # a run that outlives a killed worker
        get_run_logger().info("this run's output goes to %s", output)
    repo_root = Path(root).resolve() if root else Path.cwd()
    params = load_params(repo_root / params_file, overrides, dataset)  # a bad override stops here, nothing written
    try:
        return _run_stages(repo_root, dataset, params, overrides or {}, force)
    finally:
        if deployment.id and not deliver_queued_events():  # its heartbeats reach the server before its final state
            get_run_logger().warning("events of this run not all sent within 10 s: the heartbeat automation may act "
                                     "on it once it has ended (docs/RELIABILITY.md, heartbeat automation)")


def _run_stages(repo_root: Path, dataset: str, params: Params, overrides: dict[str, Any],
                force: bool) -> PipelineOutcome:
    dataset_params = params.listed_dataset(dataset)
    paths = DatasetPaths(repo_root, dataset)
    from prefect.runtime import deployment

    wait_seconds = DEPLOYMENT_LOCK_WAIT_SECONDS if deployment.id else 0
    with pipeline_held(paths, f"flow {FLOW_NAME}", wait_seconds):
        write_overrides(paths, overrides)  # `{}` too: a killed run's overrides end here
        try:
            return _run_locked(paths, dataset_params, params, force)
        finally:
            if overrides:
                write_overrides(paths, None)


def _run_locked(paths: DatasetPaths, dataset_params, params: Params, force: bool) -> PipelineOutcome:
    repo_root, dataset = paths.root, paths.dataset
    if is_remote_run():  # a worker's fresh clone: history, tags and the dataset's outputs from the remotes
        prepare_remote_run(repo_root, dataset)
    # What `dvc repro` does first (tasks/check_params.py), params.yaml being checked: the links through which DVC
    # watches each local_dir, and the marker every stage depends on.
    link_sources(repo_root, params)
    write_marker(repo_root / PARAMS_CHECK_FILE)
    _run(download, paths, dataset_params, params.download)
    ingested = _run(ingest, paths, dataset_params, params.ingest)
    changed = changed_stages(repo_root, dataset)
    if not changed and not force:
        # The drops it fetched added no image (none of their files still waits in the inbox): no version will take
        # them off the remote.
        if is_remote_run() and not ingested.waiting:
            release_fetched(repo_root, dataset)
        message = publish_skip(paths, read_last_run(paths), ingested.refusal())
        get_run_logger().info("%s%s", RESULT_PREFIX, message)
        return PipelineOutcome(dataset, True, message)
    get_run_logger().info("changed since dvc.lock: %s", ", ".join(changed) or "nothing (force=True)")
    _run(validate, paths, dataset_params, params.validate_)
    try:
        _run(drift, paths, dataset_params, params.drift)
    except StageFailedError as error:
        if isinstance(error.__cause__, DriftBlockedError):  # versioned, not trained on
            # The data version: download and ingest. Not validate, whose Data Docs carry the time of the run:
            # recording it would make every blocked run that follows a commit of its own.
            record_outputs(repo_root, dataset, STAGES[:STAGES.index("validate")])
            commit_run(paths, params.versioning.commit, f"not trained: {error.__cause__}")
        raise
    _run(normalize, paths)
    training = _run(train, paths, params.train_for(dataset))
    evaluation = _run(evaluate, paths, dataset_params)
    decision = _run(promote, paths, dataset_params, params.promote)
    _run(report, paths, dataset_params, params.evaluate)
    publish_results(paths, dataset_params.class_names, training, evaluation, decision)
    record_outputs(repo_root, dataset)
    commit_run(paths, params.versioning.commit, decision.reason)
    write_last_run(paths)
    get_run_logger().info("%s%s", RESULT_PREFIX, decision.reason)
    return PipelineOutcome(dataset, False, decision.reason, evaluation, decision)


def _run(stage_task, *arguments):
    """Call a stage's task; a failure names the stage in the flow run's state message."""
    try:
        return stage_task(*arguments)
    except PipelineError as error:
        raise StageFailedError(f"stage '{stage_task.name}' failed: {type(error).__name__}: {error}") from error


def _listed_datasets(params_file: str = PARAMS_FILE) -> str:
    """What --help offers: the datasets the pipeline runs (listed under `datasets`), not every one under `data`."""
    try:
        return "in " + params_file + ": " + ", ".join(load_params(Path(params_file)).datasets)
    except (OSError, PipelineError):  # --help still answers when params.yaml is missing or broken
        return f"{params_file} unreadable"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist",
                        help=f"a dataset listed under `datasets` in the params file ({_listed_datasets()}; "
                             f"default: %(default)s)")
    parser.add_argument("--params-file", default=PARAMS_FILE)
    parser.add_argument("--overrides", type=json.loads, default=None,
                        help='JSON object of dotted params keys, e.g. \'{"train.epochs": 3}\'')
    parser.add_argument("--force", action="store_true", help="retrain even when nothing changed")
    arguments = parser.parse_args(argv)
    try:
        load_params(Path(arguments.params_file)).listed_dataset(arguments.dataset)  # before Prefect starts
        with terminal_api(Path.cwd()):  # in a session of its own: a Ctrl-C reaches the run, not its server
            outcome = training_pipeline(dataset=arguments.dataset, params_file=arguments.params_file,
                                        overrides=arguments.overrides, force=arguments.force)
    except PipelineError as error:  # a user's mistake or bad data: its message says what and where
        if isinstance(error.__cause__, StageInterrupted):  # Ctrl-C in training: where a rerun resumes
            print(f"{FLOW_NAME} interrupted for {arguments.dataset}: {error.__cause__}", file=sys.stderr)
            return 130
        print(f"{FLOW_NAME} failed for {arguments.dataset}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C in another stage
        print(f"{FLOW_NAME} interrupted for {arguments.dataset} (Ctrl-C): the production model is unchanged; run it "
              "again to go on", file=sys.stderr)
        return 130
    print(outcome.message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
