"""Crashed runs on a real Prefect server and worker with the deployments `make serve` makes from params.yaml (issue 17):
`kill -9` of the flow-run process, of the worker, and of the server during a run, then `make serve` again. In each
case the run ends in a final state within a stated time, the deployment's slot is released and the next run goes
ahead, a notification arrives for a crashed run, no half-trained model is promoted, overrides do not outlive their
run, and nothing needs cleaning by hand. Slow (real training runs, heartbeats 30 s apart): `make test-slow`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from orchestration.serve import Service, run_cli, serve
from orchestration.automations import WEBHOOK_VARIABLE
from orchestration.server_log import RESENT_EVENTS_DROPPED
from orchestration.status import read_status
from orchestration.worker import oom_kill_file
from tests.integration.repo import run
from tests.prefect_server import api_client, served_mnist_sample
from tests.webhook import Receiver, hook_url, receiver  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEPLOYMENT = "training-pipeline/mnist-sample"
# Long enough a training run to be killed in: every epoch, no accuracy threshold to stop early.
LONG_RUN = {"force": True, "overrides": {"data.mnist-sample.threshold": 1.0, "data.mnist-sample.train.epochs": 40}}
# A run that outlives its killed worker trains to its end: long enough to be in training when the worker is killed.
SURVIVING_RUN = {"force": True, "overrides": {"data.mnist-sample.threshold": 1.0, "data.mnist-sample.train.epochs": 12}}
# How long a run may stay Running after the process that ran it is gone (docs/RELIABILITY.md "Crashed runs"):
# the worker reports its child's death at once; without a worker, the heartbeat automation gives 90 s after the
# last heartbeat (sent every 30 s), and the server's trigger loop a few seconds more.
WORKER_SEES_IT_SECONDS = 30
NO_HEARTBEAT_SECONDS = 30 + 90 + 30
DATABASES: dict[Service, str] = {}  # the database each served Prefect runs on


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def served(tmp_path_factory, receiver, request):
    # A restarted server may drop a batch of the events its clients send again (Prefect 3.8.8 on SQLite: see
    # RESENT_EVENTS_DROPPED); the triggers saw them, and every state and notification below is checked.
    with served_mnist_sample(tmp_path_factory, "crash", environment={WEBHOOK_VARIABLE: hook_url(receiver)},
                             expected=(RESENT_EVENTS_DROPPED,),
                             database=request.param) as service:
        DATABASES[service] = request.param
        first = submit(service)
        assert wait_final(service, first, 400).is_completed()
        yield service


def submit(service: Service, parameters: dict | None = None) -> str:
    """`prefect deployment run` without waiting; the flow run's id."""
    extra = ["--params", json.dumps(parameters)] if parameters else []
    output = run_cli(service, "deployment", "run", DEPLOYMENT, *extra).stdout
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def read_run(service: Service, flow_run_id: str):
    with api_client(service) as client:
        return client.read_flow_run(flow_run_id)


def wait_final(service: Service, flow_run_id: str, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            flow_run = read_run(service, flow_run_id)
        except Exception:  # the server is being restarted
            flow_run = None
        if flow_run is not None and flow_run.state.is_final():
            return flow_run.state
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} not final after {seconds:.0f} s: {read_run(service, flow_run_id).state}")


def wait_training(service: Service, flow_run_id: str, seconds: float = 300) -> int:
    """Wait until the run's train stage runs; the PID of the process running the flow run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with api_client(service) as client:
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if any(task.name.startswith("train") and task.state and task.state.is_running() for task in tasks):
            pid = flow_run_process(flow_run_id)
            if pid:
                time.sleep(3)  # into its epochs
                return pid
        time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} never reached its train stage")


def flow_run_process(flow_run_id: str) -> int | None:
    """The process running the flow run: the one whose environment names it (the worker sets it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environment:
            return int(entry.name)
    return None


def notifications_for(flow_run_name: str, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [message for message in Receiver.received if f"Flow run: {flow_run_name}," in message["body"]["body"]]
        if found:
            return found
        time.sleep(0.5)
    return []


def one_notification(service: Service, flow_run_id: str) -> dict:
    """The crashed run's notification, once (issue 27 item 5): every message for it carries its id as the
    idempotency key; on PostgreSQL it is sent once; on SQLite Prefect's notification consumer may send it twice
    (`database is locked`), and then `make status` names the run."""
    name = read_run(service, flow_run_id).name
    found = notifications_for(name, 60)
    time.sleep(5)  # a second notification for the same run would have arrived by now
    found = notifications_for(name, 1)
    assert found and {message["body"]["idempotency_key"] for message in found} == {flow_run_id}, found
    if len(found) > 1:
        assert DATABASES[service] == "sqlite", found
        deadline = time.monotonic() + 30
        while not (named := [line for line in read_status(service).notifications if flow_run_id in line]):
            assert time.monotonic() < deadline, f"make status does not name the run notified twice: {found}"
            time.sleep(1)
        assert f"notified {len(found)} times" in named[0], named
    return found[0]


def production_model(service: Service) -> bytes:
    return (service.root / "models/mnist-sample/production/model.keras").read_bytes()


# The worker's and the flow-run process's deaths are the worker's and the kernel's business, whatever the server's
# database: these two run on PostgreSQL, production's. The heartbeat automation and the server's restart, where the
# database acts (SQLite's write lock, its events resent), run on both.
ON_POSTGRESQL = pytest.mark.parametrize("served", ["postgresql"], indirect=True)


@ON_POSTGRESQL
def test_kill_9_of_the_flow_run_process(served):
    params_before, champion = (served.root / "params.yaml").read_bytes(), production_model(served)
    killed = submit(served, LONG_RUN)
    waiting = submit(served)  # queued behind it: the deployment runs one at a time
    pid = wait_training(served, killed)

    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    state = wait_final(served, killed, WORKER_SEES_IT_SECONDS + 60)

    print(f"\nkill -9 of the flow-run process: {state.name} {time.monotonic() - started:.1f} s later")
    assert state.is_crashed(), state
    assert time.monotonic() - started <= WORKER_SEES_IT_SECONDS
    # Issue 27 item 12: the cause, where this machine's kernel keeps the count that tells it (not Prefect's stock
    # "exceeding memory limits").
    said = ("killed by SIGKILL from outside (`kill -9`" if oom_kill_file() else "keeps no count that tells which")
    assert said in state.message and "memory limits" not in state.message, state.message
    notification = one_notification(served, killed)
    assert said in notification["body"]["body"], notification
    assert notification["body"]["subject"] == "training-pipeline Crashed: deployment mnist-sample"
    assert wait_final(served, waiting, 400).is_completed()  # the slot was released
    assert production_model(served) == champion  # no half-trained model; the next run retrained the same one
    assert (served.root / "params.yaml").read_bytes() == params_before  # never held the killed run's overrides
    assert (served.root / "data/overrides/mnist-sample.yaml").read_text() == "{}\n"  # the next run ended them
    assert run(["git", "status", "--porcelain"], served.root).stdout == ""
    assert "up to date" in run(["dvc", "status"], served.root).stdout


@ON_POSTGRESQL
def test_kill_9_of_the_worker_the_run_completes_and_the_worker_is_back_by_itself(served):
    """Issue 27 item 2: the run died 10 s after its worker (BrokenPipeError: it wrote to the dead worker's pipe),
    53.8 s of training lost, and nothing started the worker again."""
    running = submit(served, SURVIVING_RUN)
    wait_training(served, running)
    before = online_workers(served)
    (worker,) = children(int(served.pid_file("worker").read_text()))  # `make serve`'s loop runs the worker

    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    assert read_run(served, running).state.is_running()  # the worker died under a run in progress
    while not (online_workers(served) - before) and time.monotonic() - killed < 120:
        time.sleep(1)
    back_after = time.monotonic() - killed
    state = wait_final(served, running, 600)
    after = submit(served)  # no `make serve`

    print(f"\nkill -9 of the worker: a new worker online {back_after:.1f} s later; the run ended {state.name}")
    assert state.is_completed(), state
    assert back_after <= 30
    assert wait_final(served, after, 400).is_completed()
    assert not notifications_for(read_run(served, running).name, 5)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def online_workers(service: Service) -> set[str]:
    from orchestration.deployments import WORK_POOL

    with api_client(service) as client:
        return {worker.name for worker in client.read_workers_for_work_pool(WORK_POOL)
                if worker.status.value == "ONLINE"}


def test_a_run_whose_process_and_worker_are_gone_is_crashed_by_the_heartbeat_automation(served):
    running = submit(served, LONG_RUN)
    pid = wait_training(served, running)
    worker = int(served.pid_file("worker").read_text())

    os.killpg(worker, signal.SIGKILL)  # the worker and the loop that restarts it: their machine is gone
    with contextlib.suppress(ProcessLookupError):  # and the run, if it was not in their process group
        os.kill(pid, signal.SIGKILL)  # nobody is left to say it died: only its missing heartbeats do
    started = time.monotonic()
    state = wait_final(served, running, NO_HEARTBEAT_SECONDS + 30)

    print(f"\nkill -9 of the flow-run process and the worker: {state.name} {time.monotonic() - started:.1f} s later")
    assert state.is_crashed() and "heartbeat" in state.message, state
    assert time.monotonic() - started <= NO_HEARTBEAT_SECONDS
    assert one_notification(served, running)["body"]["subject"] == "training-pipeline Crashed: deployment mnist-sample"
    serve(served)
    assert wait_final(served, submit(served), 400).is_completed()


def test_kill_9_of_the_server_during_a_run_then_serve_again(served):
    """What the user trial saw: the run stayed RUNNING and held the slot, the next run waited in
    AwaitingConcurrencySlot, and `make serve` refused ("already serving"). Now the run, whose process and worker
    live on, waits for the server (Prefect's client retries) and completes. A cancel right after the restart is
    not asserted: it ended Cancelled in 12 and 16 s twice, and stayed Cancelling once (docs/RELIABILITY.md)."""
    running = submit(served, SURVIVING_RUN)
    waiting = submit(served)
    wait_training(served, running)
    server = int(served.pid_file("server").read_text())

    os.kill(server, signal.SIGKILL)
    assert flow_run_process(running)  # the server died under a run in progress
    time.sleep(5)
    started, _ = serve(served)  # `make serve` again: no "already serving", no traceback
    assert started == ["server"]  # the worker lived on, and its run too
    state = wait_final(served, running, 600)
    print(f"\nthe run in progress when the server was killed ended {state.name}")

    assert state.is_completed(), state
    assert wait_final(served, waiting, 400).is_completed()  # the slot was released
    assert not notifications_for(read_run(served, running).name, 5)
