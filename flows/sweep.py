"""The `sweep` flow: train a grid or list of param overrides in parallel on Dask, one DVC experiment each.

Dask runs the trials (prefect-dask's DaskTaskRunner: a local cluster by default, or an existing one given its
scheduler address; orchestration/parallel.py). DVC records them: each trial is `dvc exp run --temp`, in its own
temporary copy of the repository, saved as a named experiment (versioning/experiments.py), so trials never
share a workspace and `dvc exp show` compares them. The flow then publishes a table artifact (key
`<dataset>-sweep`) ranking the trials by validation accuracy and names the best. A trial trains and stops there:
the test split chooses nothing (it scores the chosen settings when the pipeline runs them, and gates promotion).

    python -m flows.sweep --dataset mnist-sample --grid '{"cnn.dense_units": [64, 256], "learning_rate": [0.001]}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from orchestration.artifacts import artifact_key
from versioning.experiments import experiment_json, reproduce, run_experiment
from orchestration.parallel import dask_runner, shared_api
from orchestration.serve import terminal_api
from tasks.common.config import parse_params, read_overrides
from tasks.common.errors import ConfigError, PipelineError
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.lib.sweep import TrialResult, check_trials, expand_grid, param_overrides, rank_trials, ranking_table

FLOW_NAME = "sweep"


class SweepError(PipelineError):
    """No trial of a sweep finished."""


@dataclass(frozen=True)
class SweepOutcome:
    dataset: str
    ranked: list[TrialResult]
    best: TrialResult
    seconds: float


@task(name="trial", cache_policy=NO_CACHE)
def trial(root: str, dataset: str, name: str, overrides: dict[str, Any]) -> TrialResult:
    """Train one trial as the DVC experiment `name`; return its validation metrics."""
    started = time.perf_counter()
    error = run_experiment(Path(root), name, param_overrides(dataset, overrides), f"train@{dataset}")
    seconds = time.perf_counter() - started
    if error is not None:
        get_run_logger().error("trial %s %s failed after %.0f s: %s", name, overrides, seconds, error)
        return TrialResult(name, overrides, seconds=seconds, error=error)
    try:
        metrics = experiment_json(Path(root), name, DatasetPaths(Path(root), dataset).training_metrics_file)
    except LookupError as lookup_error:
        get_run_logger().error("trial %s %s: %s", name, overrides, lookup_error)
        return TrialResult(name, overrides, seconds=seconds, error=str(lookup_error))
    get_run_logger().info("trial %s %s: validation accuracy %.4f in %.0f s", name, overrides,
                          metrics["val_accuracy"], seconds)
    return TrialResult(name, overrides, metrics["val_accuracy"], metrics["val_loss"], metrics["stop_epoch"], seconds)


@flow(name="sweep-trials")
def run_trials(root: str, dataset: str, names: list[str], trials: list[dict[str, Any]]) -> list[TrialResult]:
    """Submit every trial to the task runner at once; wait for all of them."""
    futures = [trial.submit(root, dataset, name, overrides) for name, overrides in zip(names, trials)]
    return [future.result() for future in futures]


@flow(name=FLOW_NAME, log_prints=True)
def sweep(dataset: str = "mnist-sample", grid: dict[str, list[Any]] | None = None,
          trials: list[dict[str, Any]] | None = None, workers: int = 2, scheduler_address: str | None = None,
          sequential: bool = False, name_prefix: str | None = None, root: str | None = None) -> SweepOutcome:
    """Run every trial (the grid's combinations, then `trials`) as a DVC experiment and rank them.

    `workers` sizes the local Dask cluster; `scheduler_address` (e.g. tcp://10.0.0.5:8786) uses an existing
    one instead; `sequential` runs the trials one after another without Dask (for comparison).
    """
    repo_root = Path(root).resolve() if root else Path.cwd()
    specs = _checked_trials(repo_root, dataset, grid, trials)
    if workers < 1:
        raise ConfigError(f"sweep: workers must be at least 1, found {workers}")
    prefix = name_prefix or f"sweep-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    names = [f"{prefix}-{number}" for number in range(1, len(specs) + 1)]
    _prepare_data(repo_root, dataset)
    started = time.perf_counter()
    if sequential:
        results = [trial(str(repo_root), dataset, name, spec) for name, spec in zip(names, specs)]
    else:
        runner = run_trials.with_options(task_runner=dask_runner(workers, scheduler_address))
        with shared_api():
            results = runner(str(repo_root), dataset, names, specs)
    seconds = time.perf_counter() - started
    ranked = rank_trials(results)
    if ranked[0].error is not None:
        raise SweepError(f"sweep {prefix}: every trial failed; first error: {ranked[0].error}")
    _publish(dataset, ranked, seconds)
    return SweepOutcome(dataset, ranked, ranked[0], round(seconds, 1))


def _checked_trials(root: Path, dataset: str, grid, trials) -> list[dict[str, Any]]:
    document = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8"))
    parse_params(document).listed_dataset(dataset)  # DVC has stages for the listed datasets only
    overrides_file = DatasetPaths(root, dataset).overrides_file
    if overrides := read_overrides(overrides_file):  # `dvc exp run --temp` copies the workspace's changes
        raise ConfigError(f"{overrides_file} holds a flow run's overrides {overrides} (a run of {dataset} in progress, "
                          "or one that was killed): every trial would train with them; sweep once that run has "
                          "ended, or, if none runs, write {} there")
    return check_trials(document, dataset, [*(expand_grid(grid) if grid else []), *(trials or [])])


def _prepare_data(root: Path, dataset: str) -> None:
    """Bring the dataset's data up to date once, so that trials only train."""
    error = reproduce(root, f"normalize@{dataset}")
    if error is not None:
        raise SweepError(f"sweep: preparing {dataset}'s data failed (dvc repro normalize@{dataset}):\n{error}")


def _publish(dataset: str, ranked: list[TrialResult], seconds: float) -> None:
    best = ranked[0]
    summary = (f"best of {len(ranked)} trials in {seconds:.0f} s: {best.name} {best.overrides} "
               f"(validation accuracy {best.val_accuracy:.4f}); apply it with `dvc exp apply {best.name}`")
    create_table_artifact(key=artifact_key(dataset, "sweep"), table=ranking_table(ranked),
                          description=f"{dataset} sweep, best first. {summary}")
    get_run_logger().info(summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--grid", type=json.loads, default=None, help='JSON, e.g. \'{"cnn.dense_units": [64, 256]}\'')
    parser.add_argument("--trials", type=json.loads, default=None, help='JSON list, e.g. \'[{"cnn.dense_units": 64}]\'')
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers (default: %(default)s)")
    parser.add_argument("--scheduler-address", default=None, help="use this Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--sequential", action="store_true", help="one trial after another, without Dask")
    parser.add_argument("--name-prefix", default=None, help="experiment names: PREFIX-1, PREFIX-2, ...")
    arguments = parser.parse_args(argv)
    try:
        with terminal_api(Path.cwd()):  # the configured server, or one of this run's own (orchestration/serve.py)
            outcome = sweep(dataset=arguments.dataset, grid=arguments.grid, trials=arguments.trials,
                            workers=arguments.workers, scheduler_address=arguments.scheduler_address,
                            sequential=arguments.sequential, name_prefix=arguments.name_prefix)
    except PipelineError as error:  # a bad grid, a dead server: its message says what to do
        print(f"{FLOW_NAME} failed for {arguments.dataset}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    for row in ranking_table(outcome.ranked):
        print(json.dumps(row))
    print(f"{len(outcome.ranked)} trials in {outcome.seconds:.1f} s; best: {outcome.best.name} "
          f"{outcome.best.overrides}; compare them all with `dvc exp show`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
