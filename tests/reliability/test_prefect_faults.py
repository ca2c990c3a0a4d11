"""Orchestration faults under Prefect, on a real server and worker with the deployments `make serve` makes from
params.yaml.

Transient download failures are retried by the task and the run completes; deterministic ones are not
retried; a flow run finds the pipeline lock taken and says so; and 10 runs submitted at once to a deployment
with concurrency 1 all end Completed, one at a time, none crashed or lost.
"""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow

from orchestration.serve import Service
from flows.stages import download
from tasks.common.config import DownloadParams, parse_params
from tasks.common.paths import DatasetPaths
from tests.conftest import project_params_document
from tests.https_server import https_server, tls_ca  # noqa: F401 (pytest fixtures)
from tests.integration.repo import copy_repository
from tests.prefect_server import FAST_POLLING, free_port, serving
from tests.reliability.conftest import snapshot
from tests.reliability.test_dvc_faults import HOLD_THE_LOCK
from tests.tasks.test_download import FIRST, PAYLOADS, flip_one_byte, generated_mnist_checksums  # noqa: F401

# Starts a Prefect server and worker and trains: over a minute, so `make test-slow` runs it (CI runs both).
pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Nine runs waiting behind the first: the case whose slot refusals made SQLite's server answer 503 in CI. It was 20
# runs, the slow suite's longest chain; 10 took 216 s alone and 420 s beside the other served modules (AMD EPYC
# without AVX-512). PostgreSQL's load test holds 100 runs.
RUNS = 10


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def served(tmp_path_factory, request):
    """mnist-sample served as `make serve` does, on PostgreSQL (production) and on SQLite (the embedded default)."""
    def only_mnist_sample(document):
        document["datasets"] = ["mnist-sample"]
        document["data"]["mnist-sample"]["train"]["epochs"] = 2
        # The first run's model must be promoted: a first challenger rejected leaves no production folder,
        # and recording that in DVC fails (see docs/RELIABILITY.md, known gaps).
        document["data"]["mnist-sample"]["min_accuracy"] = 0.0

    repo = copy_repository(tmp_path_factory.mktemp("served-repo"), only_mnist_sample)
    service = Service(home=tmp_path_factory.mktemp("prefect-home"), root=repo, port=free_port())
    with serving(service, environment=FAST_POLLING, database=request.param):
        yield service


@pytest.fixture
def api(served):
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: served.api_url}):
        yield served
        # Send the flow runs' last log lines while the server is still up (else they fail at exit).
        APILogWorker.drain_all(timeout=10)


@flow(name="download-only")
def download_only(root: str, mirror: str) -> None:
    """The pipeline's real download task (its retries included) in a flow of its own."""
    document = project_params_document()
    document["data"]["mnist"].update(local_dir=None, mirrors=[mirror])
    download(DatasetPaths(Path(root), "mnist"), parse_params(document).dataset("mnist"),
             DownloadParams(timeout_seconds=2, attempts=1, backoff_seconds=0))


def serve_mnist(server, prefix):
    for name, payload in PAYLOADS.items():
        server.routes[f"{prefix}/{name}.gz"] = ("ok", gzip.compress(payload))


def test_transient_failure_is_retried_by_the_task_and_the_run_completes(api, https_server, tmp_path):
    serve_mnist(https_server, "/flaky")
    https_server.routes[f"/flaky/{FIRST}.gz"] = ("sequence", [("status", 503), ("ok", gzip.compress(PAYLOADS[FIRST]))])

    state = download_only(str(tmp_path), https_server.url("/flaky"), return_state=True)

    assert state.is_completed(), state.message
    assert https_server.requests.count(f"/flaky/{FIRST}.gz") == 2  # failed once, retried once
    assert (tmp_path / "data/raw/mnist" / FIRST).read_bytes() == PAYLOADS[FIRST]


def test_deterministic_failure_is_not_retried(api, https_server, tmp_path):
    serve_mnist(https_server, "/bad")
    https_server.routes[f"/bad/{FIRST}.gz"] = ("ok", gzip.compress(flip_one_byte(PAYLOADS[FIRST])))

    state = download_only(str(tmp_path), https_server.url("/bad"), return_state=True)

    assert state.is_failed()
    assert https_server.requests == [f"/bad/{FIRST}.gz"]  # one attempt: a wrong checksum will not change
    assert f"DownloadError: mnist/{FIRST}: no source provided a verified file" in state.message
    assert not (tmp_path / "data/raw/mnist").exists()


def test_flow_run_finds_the_lock_taken_and_says_so(api):
    from flows.training import training_pipeline

    paths = DatasetPaths(api.root, "mnist-sample")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(paths.lock_file)], cwd=api.root,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(api.root, ignore=(".git", ".dvc/tmp"))

        state = training_pipeline(dataset="mnist-sample", root=str(api.root), return_state=True)

        assert state.is_failed()
        assert f"{paths.lock_file}: another run holds the lock (flow training-pipeline, pid {holder.pid}" in state.message
        assert snapshot(api.root, ignore=(".git", ".dvc/tmp")) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)


@pytest.mark.slow
# On SQLite, the laptop's database, where its single writer made the server answer 503 under this load and crash
# runs. On PostgreSQL the load test (tests/reliability/test_load.py) queues 100 runs at once.
@pytest.mark.parametrize("served", ["sqlite"], indirect=True)
def test_ten_runs_at_once_all_complete_one_at_a_time(served, api):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("training-pipeline/mnist-sample")
        started = time.monotonic()
        run_ids = [client.create_flow_run_from_deployment(deployment.id).id for _ in range(RUNS)]
        # A bound against a hang, not a figure (make bench-production measures runs per minute): 20 of these runs
        # took 155-163 s on an idle AVX-512 machine and over 540 s beside two other served modules without it.
        deadline = started + 600
        while True:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
            if all(run.state.is_final() for run in runs) or time.monotonic() > deadline:
                break
            time.sleep(2)
        wall_seconds = time.monotonic() - started

    print(f"\n{RUNS} flow runs submitted at once, deployment concurrency 1: all final after {wall_seconds:.0f} s")
    assert [run.state.type.value for run in runs] == ["COMPLETED"] * RUNS, [run.state.message for run in runs]
    # The 9 waiting runs stayed on the server instead of being picked up only to be refused a slot and
    # rescheduled. Before each deployment had a queue of its own with its limit, the worker bounced every waiting
    # run every few seconds (hundreds of AwaitingConcurrencySlot states in all), and in CI those writes made the
    # server answer 503 and crash 3 runs (orchestration/serve.py). One bounce is still possible when a poll comes before
    # the previous run's Pending state is written; fewer than one per run is what the queue's limit gives.
    with get_client(sync_client=True) as client:
        bounces = {run.name: count for run in runs
                   if (count := sum(state.name == "AwaitingConcurrencySlot"
                                    for state in client.read_flow_run_states(run.id)))}
    print(f"runs refused a slot and rescheduled: {bounces or 'none'}")
    assert sum(bounces.values()) < RUNS, bounces
    spans = sorted((run.start_time, run.end_time) for run in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # never two at once
