"""Many no-op deployment runs on a served Prefect with several workers: the load test (tests/reliability/test_load.py)
and `make bench`'s runs per minute (benchmarks/production.py).

The deployment (tests/noop_flow.py) has no concurrency limit and a work pool of its own; each worker is a `prefect
worker start --limit` process with a PREFECT_HOME of its own, polling as often as `make serve`'s worker does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestration.serve import Service, prefect_command, run_cli
from orchestration.service import WORKER_POLLING

POOL = "noop"
DEPLOYMENT = "noop/noop"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Load:
    """What happened to the runs submitted at once: each run's final state and number of Running states, and the
    seconds from the first run's creation to the last one's end."""

    states: list[str]
    running_counts: list[int]
    run_count_on_server: int
    seconds: float
    ends: list[datetime]

    @property
    def runs_per_minute(self) -> float:
        return 60 * len(self.states) / self.seconds

    def sustained_per_minute(self, skip: int = 10) -> float:
        """Runs per minute between the `skip`-th and the `skip`-th-to-last ends (the workers' start and the last
        stragglers left out)."""
        ends = sorted(self.ends)[skip:len(self.ends) - skip]
        if len(ends) < 10:
            return self.runs_per_minute
        return 60 * (len(ends) - 1) / (ends[-1] - ends[0]).total_seconds()


def deploy_noop(service: Service, git_remote: str | None = None, branch: str = "main") -> None:
    """The no-op deployment: its runs start in this checkout, or (`git_remote`) each in a clone of that remote's
    branch, as clone mode's (orchestration/deployments.py)."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.runner.storage import GitRepository, LocalStorage
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_cli(service, "work-pool", "create", POOL, "--type", "process", check=False)
    storage = GitRepository(url=git_remote, branch=branch) if git_remote else LocalStorage(str(PROJECT_ROOT))
    deployment = RunnerDeployment(name="noop", flow_name="noop", entrypoint="tests/noop_flow.py:noop",
                                  work_pool_name=POOL, storage=storage)
    with temporary_settings({PREFECT_API_URL: service.api_url}):
        deployment.apply(work_pool_name=POOL)


@contextmanager
def workers(service: Service, root: Path, count: int = 2, limit: int = 4,
            cwd: Path = PROJECT_ROOT) -> Iterator[list[subprocess.Popen]]:
    """`count` workers of the no-op pool started in `cwd`, each running at most `limit` flow runs at once; stopped
    on the way out."""
    started = []
    try:
        for number in range(1, count + 1):
            home = root / f"worker-{number}"
            home.mkdir(parents=True, exist_ok=True)
            environment = {**service.environment(), "PREFECT_HOME": str(home), **WORKER_POLLING}
            log = open(home / "worker.log", "ab")
            started.append(subprocess.Popen(
                prefect_command("worker", "start", "--pool", POOL, "--name", f"worker-{number}",
                                "--limit", str(limit)),
                cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        yield started
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def run_at_once(service: Service, runs: int, timeout_seconds: float = 600) -> Load:
    """Create `runs` runs of the no-op deployment at once and wait until every one is final (or the timeout)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from tests.prefect_server import api_client

    with api_client(service) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        run_ids = [client.create_flow_run_from_deployment(deployment.id).id for _ in range(runs)]
        deadline = time.monotonic() + timeout_seconds
        while True:
            found = [client.read_flow_run(run_id) for run_id in run_ids]
            if all(run.state.is_final() for run in found) or time.monotonic() > deadline:
                break
            time.sleep(2)
        on_server = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])), limit=runs * 2)
        running_counts = [sum(state.type.value == "RUNNING" for state in client.read_flow_run_states(run.id))
                          for run in found]
    ends = [run.end_time for run in found if run.end_time]
    first = min(run.created for run in found)
    seconds = (max(ends) - first).total_seconds() if ends else float("inf")
    return Load(states=[run.state.name for run in found], running_counts=running_counts,
                run_count_on_server=len(on_server), seconds=seconds, ends=ends)
