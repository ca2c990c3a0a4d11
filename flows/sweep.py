"""The `sweep` flow: train and evaluate a grid or list of param overrides in parallel on Dask, one DVC experiment each.

Dask runs the trials (prefect-dask's DaskTaskRunner: a local cluster by default, or an existing one given its
scheduler address). DVC records them: each trial is `dvc exp run --temp`, which trains in its own temporary copy
of the repository (under .dvc/tmp/exps) and saves the result as a named experiment, so trials never share a
workspace and `dvc exp show` compares them. DVC takes its repository lock only to queue and to collect a trial;
`--wait-for-lock` makes concurrent trials wait for each other there instead of failing. The flow then publishes
a table artifact (key `<dataset>-sweep`) ranking the trials by test accuracy and names the best.

    python -m flows.sweep --dataset mnist-sample --grid '{"units": [64, 256], "learning_rate": [0.001, 0.003]}'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
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
from tasks.common.config import parse_params
from tasks.common.errors import ConfigError, PipelineError
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.lib.sweep import TrialResult, check_trials, expand_grid, param_overrides, rank_trials, ranking_table

FLOW_NAME = "sweep"
TRIAL_TIMEOUT_SECONDS = 3600
VENV_BIN = Path(sys.executable).parent


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
    """Train and evaluate one trial as the DVC experiment `name`; return its test metrics."""
    started = time.perf_counter()
    settings = [f"++{key}={json.dumps(value)}" for key, value in param_overrides(dataset, overrides).items()]
    command = ["dvc", "--wait-for-lock", "exp", "run", "--temp", "--name", name,
               *[part for setting in settings for part in ("--set-param", setting)], f"evaluate@{dataset}"]
    completed = _dvc(command, Path(root))
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        message = _dvc_error(completed)
        get_run_logger().error("trial %s %s failed after %.0f s: %s", name, overrides, seconds, message)
        return TrialResult(name, overrides, seconds=seconds, error=message)
    try:
        metrics = _experiment_json(Path(root), name, DatasetPaths(Path(root), dataset).metrics_file)
    except LookupError as error:
        get_run_logger().error("trial %s %s: %s", name, overrides, error)
        return TrialResult(name, overrides, seconds=seconds, error=str(error))
    get_run_logger().info("trial %s %s: test accuracy %.4f in %.0f s", name, overrides, metrics["test_accuracy"],
                          seconds)
    return TrialResult(name, overrides, metrics["test_accuracy"], metrics["test_loss"], metrics["stop_epoch"],
                       seconds)


def _dvc(command: list[str], root: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True,
                          timeout=TRIAL_TIMEOUT_SECONDS)


def _dvc_error(completed: subprocess.CompletedProcess) -> str:
    """DVC's own ERROR line (its last lines are a support link), else the last line of output."""
    lines = [line.strip() for line in (completed.stderr + completed.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"exit code {completed.returncode}, no output"])[-1]


def _experiment_json(root: Path, name: str, path: Path) -> dict:
    """A git-tracked file as the experiment `name` committed it (experiments live under refs/exps/)."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], cwd=root, check=True,
                          capture_output=True, text=True).stdout.split()
    matching = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    if len(matching) != 1:
        raise LookupError(f"dvc exp run finished, but git has {len(matching)} experiment refs named {name!r} "
                          f"(expected 1): {matching}")
    (ref,) = matching
    shown = subprocess.run(["git", "show", f"{ref}:{path.relative_to(root).as_posix()}"], cwd=root, check=True,
                           capture_output=True, text=True)
    return json.loads(shown.stdout)


@flow(name="sweep-trials")
def run_trials(root: str, dataset: str, names: list[str], trials: list[dict[str, Any]]) -> list[TrialResult]:
    """Submit every trial to the task runner at once; wait for all of them."""
    futures = [trial.submit(root, dataset, name, overrides) for name, overrides in zip(names, trials)]
    return [future.result() for future in futures]


def dask_runner(workers: int, scheduler_address: str | None):
    """An existing Dask cluster when given its address, else a local one of `workers` single-threaded processes."""
    from prefect_dask import DaskTaskRunner

    if scheduler_address:
        return DaskTaskRunner(address=scheduler_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": None})


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
        with _shared_api():
            results = runner(str(repo_root), dataset, names, specs)
    seconds = time.perf_counter() - started
    ranked = rank_trials(results)
    if ranked[0].error is not None:
        raise SweepError(f"sweep {prefix}: every trial failed; first error: {ranked[0].error}")
    _publish(dataset, ranked, seconds)
    return SweepOutcome(dataset, ranked, ranked[0], round(seconds, 1))


@contextlib.contextmanager
def _shared_api():
    """Point Dask workers at this flow's Prefect API. Without a configured server, Prefect runs a temporary
    one for this process, and each worker process would otherwise start (and record trials in) its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # this process's temporary server (one per process), started if needed
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def _checked_trials(root: Path, dataset: str, grid, trials) -> list[dict[str, Any]]:
    document = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8"))
    if dataset not in parse_params(document).datasets:
        raise ConfigError(f"sweep: dataset {dataset!r} is not listed under `datasets` in params.yaml, so DVC "
                          f"has no stages for it")
    return check_trials(document, dataset, [*(expand_grid(grid) if grid else []), *(trials or [])])


def _prepare_data(root: Path, dataset: str) -> None:
    """Bring the dataset's data up to date once, so that trials only train and evaluate."""
    completed = _dvc(["dvc", "--wait-for-lock", "repro", f"normalize@{dataset}"], root)
    if completed.returncode != 0:
        raise SweepError(f"sweep: preparing {dataset}'s data failed (dvc repro normalize@{dataset}):\n"
                         f"{completed.stderr.strip()}")


def _publish(dataset: str, ranked: list[TrialResult], seconds: float) -> None:
    best = ranked[0]
    summary = (f"best of {len(ranked)} trials in {seconds:.0f} s: {best.name} {best.overrides} "
               f"(test accuracy {best.test_accuracy:.4f}); apply it with `dvc exp apply {best.name}`")
    create_table_artifact(key=artifact_key(dataset, "sweep"), table=ranking_table(ranked),
                          description=f"{dataset} sweep, best first. {summary}")
    get_run_logger().info(summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--grid", type=json.loads, default=None, help='JSON, e.g. \'{"units": [64, 256]}\'')
    parser.add_argument("--trials", type=json.loads, default=None, help='JSON list, e.g. \'[{"units": 64}]\'')
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers (default: %(default)s)")
    parser.add_argument("--scheduler-address", default=None, help="use this Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--sequential", action="store_true", help="one trial after another, without Dask")
    parser.add_argument("--name-prefix", default=None, help="experiment names: PREFIX-1, PREFIX-2, ...")
    arguments = parser.parse_args(argv)
    outcome = sweep(dataset=arguments.dataset, grid=arguments.grid, trials=arguments.trials,
                    workers=arguments.workers, scheduler_address=arguments.scheduler_address,
                    sequential=arguments.sequential, name_prefix=arguments.name_prefix)
    for row in ranking_table(outcome.ranked):
        print(json.dumps(row))
    print(f"{len(outcome.ranked)} trials in {outcome.seconds:.1f} s; best: {outcome.best.name} "
          f"{outcome.best.overrides}; compare them all with `dvc exp show`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
