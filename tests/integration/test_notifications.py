"""Failure notifications on a real Prefect server and worker with the deployments `make serve` makes from params.yaml: a
deployment run that fails sends one notification, through automations.yaml's automation and a webhook block, to a
receiver on 127.0.0.1 that records what arrives. Serving again updates the automation; it never duplicates it."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from prefect.states import Crashed, Failed

from orchestration.automations import NOTIFY_BLOCK, WEBHOOK_VARIABLE
from orchestration.serve import Service, run_cli
from orchestration.status import read_status, render
from tests.prefect_server import api_client, served_mnist_sample
from tests.webhook import Receiver, hook_url, receiver  # noqa: F401 (a fixture)

# Starts a Prefect server and worker and trains: over a minute, so `make test-slow` runs it (CI runs both).
pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEPLOYMENT = "training-pipeline/mnist-sample"
AUTOMATION = "training-pipeline run failed"
HEARTBEATS = "training-pipeline run stopped sending heartbeats"


@pytest.fixture(scope="module")
def served(tmp_path_factory, receiver):
    url = hook_url(receiver)
    with served_mnist_sample(tmp_path_factory, "notify", environment={WEBHOOK_VARIABLE: url}) as service:
        yield service, url


def flow_run_named(service: Service, flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).name


def automations_named(service: Service, name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        return client.read_automations_by_name(name)


def test_a_failed_deployment_run_sends_one_notification_naming_deployment_dataset_stage_and_error(served, receiver):
    service, _ = served
    Receiver.received.clear()
    overrides = json.dumps({"overrides": {"data.mnist-sample.expected_counts": {"train": 5, "test": 5}}})

    output = run_cli(service, "deployment", "run", DEPLOYMENT, "--params", overrides, "--watch",
                     "--watch-timeout", "300", check=False).stdout
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    flow_run_name = flow_run_named(service, flow_run_id)
    deadline = time.monotonic() + 90
    while not Receiver.received and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(5)  # a second notification for the same run would have arrived by now

    assert "Failed" in output, output
    assert len(Receiver.received) == 1, Receiver.received
    (notification,) = Receiver.received
    assert notification["path"] == "/hook"
    body, subject = notification["body"]["body"], notification["body"]["subject"]
    assert subject == "training-pipeline Failed: deployment mnist-sample"
    assert "Deployment: mnist-sample" in body and "Dataset: mnist-sample" in body
    assert f"Flow run: {flow_run_name}, Failed" in body
    assert "Error: stage 'validate' failed: DataValidationError: " in body, body
    # Issue 27 item 5: the receiver can tell a duplicate by its key, the flow run's id.
    assert notification["body"]["idempotency_key"] == flow_run_id
    assert read_status(service).notifications == ()

    # A second notification for the same run (its state forced from Failed to Crashed, as a second firing of the
    # automation would send): the receiver sees the same key twice, and `make status` names the run.
    with api_client(service) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message="forced by the test"), force=True)
    deadline = time.monotonic() + 90
    while len(Receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [message["body"]["idempotency_key"] for message in Receiver.received] == [flow_run_id, flow_run_id]
    status = wait_for_notification_problems(service)
    assert status.notifications == (f"flow run {flow_run_name} ({flow_run_id}): notified 2 times (Failed, Crashed)",)
    assert "1 notification problem(s)" in status.problems
    assert f"  flow run {flow_run_name} ({flow_run_id}): notified 2 times" in render(status)

    # A receiver that refuses (500): Prefect's call-webhook action reports no failure; `make status` does.
    Receiver.answer = 500
    try:
        with api_client(service) as client:
            client.set_flow_run_state(flow_run_id, Failed(message="forced by the test"), force=True)
        status = wait_for_notification_problems(service, count=3)
    finally:
        Receiver.answer = 200
    assert len(Receiver.received) == 3
    assert status.notifications[-1] == (f"flow run {flow_run_name} ({flow_run_id}): the webhook answered 500 to its "
                                        "notification; not delivered")


def wait_for_notification_problems(service: Service, seconds: float = 30, count: int = 1):
    """`make status` once it lists `count` notification problems (Prefect records an action's event just after
    carrying it out)."""
    deadline = time.monotonic() + seconds
    while len((status := read_status(service)).notifications) < count and time.monotonic() < deadline:
        time.sleep(1)
    return status


def test_a_failed_run_outside_any_deployment_sends_nothing(served, receiver):
    """Issue 27 item 6: a terminal `make flow` that failed sent "training-pipeline Failed: deployment " (blank)."""
    service, _ = served
    Receiver.received.clear()
    overrides = json.dumps({"data.mnist-sample.expected_counts": {"train": 5, "test": 5}})

    failed = subprocess.run([sys.executable, "-m", "flows.training", "--dataset", "mnist-sample", "--overrides",
                             overrides], cwd=service.root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PREFECT_API_URL": service.api_url, "PREFECT_HOME": str(service.home)})
    # Then a deployment run that fails the same way: the server's triggers see its end after the terminal run's, so
    # once its notification arrived, one for the terminal run would have too (polled, not slept).
    parameters = json.dumps({"overrides": json.loads(overrides)})
    output = run_cli(service, "deployment", "run", DEPLOYMENT, "--params", parameters, "--watch", "--watch-timeout",
                     "300", check=False).stdout
    deployment_run = flow_run_named(service, re.search(r"UUID: ([0-9a-f-]{36})", output).group(1))
    deadline = time.monotonic() + 90
    while not Receiver.received and time.monotonic() < deadline:
        time.sleep(0.5)

    assert failed.returncode == 1 and "stage 'validate' failed: DataValidationError" in failed.stderr, failed.stderr
    assert [message["body"]["subject"] for message in Receiver.received] == [
        "training-pipeline Failed: deployment mnist-sample"], Receiver.received
    assert f"Flow run: {deployment_run}, Failed" in Receiver.received[0]["body"]["body"]


def test_serving_again_updates_the_automation_in_place(served):
    service, url = served
    (before,) = automations_named(service, AUTOMATION)

    # In a process of its own, as `make serve` runs it: saving and loading blocks in this one left Prefect state
    # behind that later in-process flow runs of the test session tripped over.
    again = subprocess.run(
        [sys.executable, "-c", "import json, os, sys; from pathlib import Path; "
         "from orchestration.automations import apply_automations; "
         "from prefect.blocks.webhook import Webhook; "
         "names = apply_automations(sys.argv[1], Path(sys.argv[2]), os.environ); "
         f"print(json.dumps([names, Webhook.load({NOTIFY_BLOCK!r}).url.get_secret_value()]))",
         service.api_url, str(service.root)],
        env={**os.environ, WEBHOOK_VARIABLE: url, "PREFECT_API_URL": service.api_url, "PREFECT_HOME": str(service.home)},
        capture_output=True, text=True, timeout=120, check=True)

    (after,) = automations_named(service, AUTOMATION)
    assert json.loads(again.stdout.splitlines()[-1]) == [[HEARTBEATS, AUTOMATION], url]  # the block holds the address
    assert after.id == before.id and after.actions[0].type == "call-webhook"
    logs = "".join(path.read_text() for path in (service.home / "logs").glob("*.log"))
    assert url not in logs + again.stderr  # the webhook address is a secret of the environment: not in the logs
