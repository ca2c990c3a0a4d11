"""Scheduled retraining, proven by its effect: runs the server's scheduler creates by itself, that the worker picks up.

A copy of the repository (mnist-sample only) is served by `make serve`'s command, with one change: the mnist-sample
dataset's daily cron (data.mnist-sample.schedule) is replaced by an interval of INTERVAL_SECONDS. Nobody calls
`prefect deployment run`. The scheduler creates the runs ahead (many, all queued behind the deployment's concurrency
limit of 1); the worker runs them; the first trains and promotes, the next finds nothing changed and skips. Then the
schedules are paused and every run still queued is cancelled, so no run is left behind. The server runs on
PostgreSQL (a database of its own in the session's server, tests/postgres.py), as in production. The server's log is
checked for errors when it stops (tests/prefect_server.py), as for every server the tests start.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from orchestration.serve import WORK_POOL, Service, run_cli, stop
from tests.integration.repo import copy_repository, run
from tests.integration.test_deployments import DEPLOYMENT
from tests.prefect_server import FAST_POLLING, checked_log, database_environment, free_port

# Starts a Prefect server and worker and trains: over a minute, so `make test-slow` runs it (CI runs both).
pytestmark = [pytest.mark.integration, pytest.mark.slow]
INTERVAL_SECONDS = 15
RUNS_TO_WATCH = 2
# The main scheduler pass every 5 s instead of 60 s, so that a pause that did not stop the schedule would show
# as new runs within the wait after it.
SCHEDULER_LOOP = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}


def short_schedule_copy(destination):
    def only_mnist_sample(document):
        document["datasets"] = ["mnist-sample"]
        document["data"]["mnist-sample"]["train"]["epochs"] = 2
        # The first run's model must be promoted, whatever its accuracy after 2 epochs.
        document["data"]["mnist-sample"]["min_accuracy"] = 0.0
        document["data"]["mnist-sample"]["schedule"] = {"interval": INTERVAL_SECONDS}

    return copy_repository(destination, only_mnist_sample)


def flow_runs(service: Service):
    """The mnist-sample deployment's flow runs, earliest expected start first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200)


def wait_for(service: Service, condition, timeout_seconds: float, what: str):
    deadline = time.monotonic() + timeout_seconds
    while True:
        runs = flow_runs(service)
        if condition(runs):
            return runs
        if time.monotonic() > deadline:
            states = [(run.name, run.state_name) for run in runs[:6]]
            raise AssertionError(f"{what}: not within {timeout_seconds:.0f} s; first runs: {states}")
        time.sleep(2)


def started_first(runs):
    """The runs that ended, in the order they started (a run queued behind the concurrency limit may get the slot
    before one that was due earlier)."""
    return sorted((run for run in runs if run.state.is_final()), key=lambda run: run.start_time)


def decision(service: Service, flow_run_id) -> str:
    """The promotion decision artifact that flow run published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["mnist-sample-decision"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return artifact.data


def refused_slots(service: Service, runs, before: datetime) -> int:
    """How many times these runs were picked up by the worker only to be refused the concurrency slot, before
    `before` (while the schedule ran: once runs are cancelled, a cancelled run holds its slot until its process has
    exited, and the next is refused on every poll meanwhile; that is not the handoff this counts)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        return sum(state.name == "AwaitingConcurrencySlot" and state.timestamp < before for run in runs
                   for state in client.read_flow_run_states(run.id))


def status_command(service: Service, action: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """`make serve` or `make status` in the copy: `python -m orchestration.serve <action>` with its PREFECT_HOME."""
    return subprocess.run([sys.executable, "-m", "orchestration.serve", action, "--port", str(service.port)],
                          cwd=service.root, env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """Serve the short-schedule copy; watch the first runs end; pause, cancel what is queued; stop the server."""
    repo = short_schedule_copy(tmp_path_factory.mktemp("scheduled-repo"))
    service = Service(home=tmp_path_factory.mktemp("prefect-home"), root=repo, port=free_port())
    environment = {**service.environment(), **FAST_POLLING, **SCHEDULER_LOOP, **database_environment("postgresql")}
    with checked_log(service.log_file("server"), stop_server=lambda: stop(service), database="postgresql"):
        served = status_command(service, "serve", environment)
        created = wait_for(service, lambda runs: len(runs) >= 3, 60, "the scheduler created 3 runs")
        finished = started_first(wait_for(service, lambda runs: len(started_first(runs)) >= RUNS_TO_WATCH, 420,
                                          f"{RUNS_TO_WATCH} scheduled runs ended"))[:RUNS_TO_WATCH]
        decisions = [decision(service, run.id) for run in finished]
        status = status_command(service, "status", environment)
        model = (repo / "models/mnist-sample/production/model.keras").is_file()
        dvc_status = run(["dvc", "status"], repo).stdout.strip()
        paused_at = datetime.now(timezone.utc)
        run_cli(service, "deployment", "schedule", "pause", "--all")
        # `make serve` again, as after a crash: the pause is the operator's and survives it (issue 27, item 1).
        served_again = status_command(service, "serve", environment)
        for queued in [run for run in flow_runs(service) if not run.state.is_final()]:
            cancel = run_cli(service, "flow-run", "cancel", str(queued.id), check=False)
            # A run may end between the listing and its cancel.
            assert cancel.returncode == 0 or "already in terminal state" in cancel.stdout, cancel.stdout
        left = wait_for(service, lambda runs: all(run.state.is_final() for run in runs), 120,
                        "every run ended after the cancel")
        time.sleep(3 * 5)  # three passes of the scheduler (SCHEDULER_LOOP)
        after_pause = flow_runs(service)
        bounces = refused_slots(service, left, before=paused_at)
        paused_status = status_command(service, "status", environment)
    # `make stop`, then `make flow` as after any stop: the flow runs without a server, as before serving.
    stopped = status_command(service, "stop", environment)
    without_server = {key: value for key, value in service.environment().items() if key != "PREFECT_API_URL"}
    flow_after_stop = subprocess.run([sys.executable, "-m", "flows.training", "--dataset", "mnist-sample"], cwd=repo,
                                     env=without_server, capture_output=True, text=True, timeout=300)
    cancelled = sum(run.state_name == "Cancelled" for run in left)
    print(f"\n{len(left)} scheduled runs ({INTERVAL_SECONDS} s apart) kept once paused: {RUNS_TO_WATCH} watched to "
          f"Completed, {len(left) - cancelled - RUNS_TO_WATCH} more completed, {cancelled} cancelled after the pause")
    yield {"served": served, "served_again": served_again, "status": status, "paused_status": paused_status,
           "created": created,
           "finished": finished, "decisions": decisions, "production_model": model, "dvc_status": dvc_status,
           "left": left, "after_pause": after_pause, "stopped": stopped, "flow_after_stop": flow_after_stop,
           "bounces": bounces}


def test_the_scheduler_creates_runs_by_itself_an_interval_apart(scheduled):
    created = scheduled["created"]

    assert all(run.auto_scheduled for run in created), [(run.name, run.created_by) for run in created]
    starts = [run.expected_start_time for run in created]
    assert {(later - earlier).total_seconds() for earlier, later in zip(starts, starts[1:])} == {INTERVAL_SECONDS}


def test_the_worker_runs_them_and_they_complete(scheduled):
    finished = scheduled["finished"]

    assert [run.state_name for run in finished] == ["Completed"] * RUNS_TO_WATCH, [
        run.state.message for run in finished]
    assert all(run.work_pool_name == WORK_POOL and run.infrastructure_pid for run in finished)
    assert finished[0].end_time <= finished[1].start_time  # one at a time
    # The runs queued behind the first wait on the server (their queue's limit, set by `make serve`), instead of
    # being picked up, refused the slot and rescheduled on every poll. One refusal is possible in a race at each
    # handoff from a run to the next: 2 among the first 3 runs (seen once in CI, with the CNN's slightly longer
    # runs). Without the queues: 4 refusals over 3 runs (measured).
    assert scheduled["bounces"] <= 2, scheduled["bounces"]


def test_the_first_run_trains_and_promotes_and_the_next_skips(scheduled):
    first, second = scheduled["finished"]
    promoted, skipped = scheduled["decisions"]

    assert promoted.startswith("# mnist-sample: promoted")
    assert "skipped" in skipped and f"nothing changed since run {first.name}" in skipped
    assert scheduled["production_model"]
    assert scheduled["dvc_status"] == "Data and pipelines are up to date."


def test_make_serve_ends_once_the_worker_polls_and_the_first_scheduled_run_exists(scheduled):
    served, created = scheduled["served"], scheduled["created"]

    assert served.returncode == 0, served.stdout + served.stderr
    section = served.stdout.split("training-pipeline/mnist-sample\n", 1)[1]
    assert section.startswith(f"    schedule:  every {INTERVAL_SECONDS} s\n    next run:  ")
    next_run = section.splitlines()[1]
    assert any(next_run.startswith(f"    next run:  {run.name} at ") for run in created), next_run
    assert f"in pool '{WORK_POOL}': online" in served.stdout and "status: OK\n" in served.stdout


def test_make_status_shows_the_schedule_the_next_and_the_last_run(scheduled):
    status = scheduled["status"]

    assert status.returncode == 0, status.stdout + status.stderr
    output = status.stdout
    assert ": healthy\n" in output and f"in pool '{WORK_POOL}': online" in output
    section = output.split("training-pipeline/mnist-sample\n", 1)[1]
    assert section.startswith(f"    schedule:  every {INTERVAL_SECONDS} s\n    next run:  ")
    last_run = section.splitlines()[2]
    assert last_run.startswith("    last run:  ") and any(f" {run.name}: " in last_run for run in scheduled["left"])
    assert "service errors in the last 1 h" in output and "): none\n" in output
    assert output.rstrip().endswith("status: OK")


def test_pausing_and_cancelling_leaves_no_run_behind(scheduled):
    left, after_pause = scheduled["left"], scheduled["after_pause"]

    assert {run.state_name for run in left} <= {"Completed", "Cancelled"}, [(run.name, run.state_name) for run in left]
    assert [run.id for run in after_pause] == [run.id for run in left]  # no new run once paused
    assert all(run.state.is_final() for run in after_pause)
    section = scheduled["paused_status"].stdout.split("training-pipeline/mnist-sample\n", 1)[1]
    assert section.startswith(f"    schedule:  every {INTERVAL_SECONDS} s (paused)\n    next run:  none scheduled\n")


def test_serving_again_keeps_the_pause_and_says_so(scheduled):
    """Serving again redeploys every dataset from params.yaml; the paused schedule stays paused (the runs after it
    are checked above: no new run once paused, over three scheduler passes after this serve)."""
    again = scheduled["served_again"].stdout

    assert "started: nothing" in again, again + scheduled["served_again"].stderr
    assert "paused schedules, kept paused: mnist-sample (turn one on again with: prefect deployment schedule " \
           "resume" in again


def test_after_make_stop_the_flow_runs_without_a_server_as_before_serving(scheduled):
    """Serving writes the server's address into the project's Prefect profile; `make stop` takes it out again
    (issue 16: every target failed with "Failed to reach API" after a stop)."""
    stopped, flow = scheduled["stopped"], scheduled["flow_after_stop"]

    assert stopped.returncode == 0, stopped.stderr
    assert flow.returncode == 0, flow.stdout[-2000:] + flow.stderr[-3000:]
    assert "Failed to reach API" not in flow.stderr
    assert "mnist-sample: nothing changed since run" in flow.stdout
