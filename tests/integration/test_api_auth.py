"""The served API closed to strangers (issue 17): `make serve` with PREFECT_API_AUTH_STRING set, on a real server,
worker and the deployments made from params.yaml. A request without the string, or with another, is refused; the CLI,
the worker and the flow runs it starts are let in; and the events that travel over Prefect's websocket, not its REST
API, still arrive (PrefectHQ/prefect#22812 was their silent loss): a run's heartbeats, the data-landed event that
triggers a run, and the automation that sends a failure notification. The string is in no log and no file.

Slow (a served Prefect, a triggered training run, a failed run: about 2 minutes): `make test-slow` and CI."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from orchestration.automations import WEBHOOK_VARIABLE
from orchestration.inbox import DROP_EVENT, dataset_resource
from orchestration.serve import AUTH_VARIABLE, Service, run_cli
from tests.integration.repo import run
from tests.integration.test_triggers import tilted_digits
from tests.prefect_server import api_client, process_command_lines, served_mnist_sample
from tests.webhook import Receiver, hook_url, receiver  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SECRET = f"pipeline:{secrets.token_hex(16)}"
DEPLOYMENT = "training-pipeline/mnist-sample"


@pytest.fixture(scope="module")
def served(tmp_path_factory, receiver):
    environment = {AUTH_VARIABLE: SECRET, WEBHOOK_VARIABLE: hook_url(receiver)}
    with served_mnist_sample(tmp_path_factory, "auth", environment,
                             edit_params=lambda document: document["ingest"].update(settle_seconds=1)) as service:
        yield service


def post(service: Service, route: str, body: dict, auth: str | None) -> tuple[int, dict]:
    """A REST call as a stranger (no string), an impostor (another string) or a client (the string) makes it."""
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(f"{service.api_url}{route}", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, {}


def runs_since(service: Service, since: datetime) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with api_client(service, SECRET) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["mnist-sample"])))
    return [flow_run for flow_run in runs if flow_run.created >= since and not flow_run.auto_scheduled]


def wait_final(service: Service, since: datetime, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        final = [flow_run for flow_run in runs_since(service, since) if flow_run.state.is_final()]
        if final:
            return final
        time.sleep(2)
    raise AssertionError(f"no run of {DEPLOYMENT} reached a final state in {seconds:.0f} s: "
                         f"{[(r.name, r.state.name) for r in runs_since(service, since)]}")


def events_of(service: Service, event: str, resource_id: str) -> list:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    occurred = EventOccurredFilter(since=datetime(2000, 1, 1, tzinfo=timezone.utc))
    with api_client(service, SECRET) as client:
        page = client.read_events(EventFilter(occurred=occurred, event=EventNameFilter(name=[event]),
                                              resource=EventResourceFilter(id=[resource_id])), limit=50)
    return page.events


def test_a_request_without_the_string_or_with_another_is_refused(served):
    body = {"limit": 1}

    assert post(served, "/flow_runs/filter", body, auth=None)[0] == 401
    assert post(served, "/flow_runs/filter", body, auth="pipeline:guessed")[0] == 401
    assert post(served, "/flow_runs/filter", body, auth=SECRET)[0] == 200
    stranger = run(["prefect", "deployment", "inspect", DEPLOYMENT], served.root, check=False,
                   env={**served.environment(), AUTH_VARIABLE: ""})
    assert stranger.returncode != 0 and "401" in stranger.stdout + stranger.stderr
    client = run_cli(served, "deployment", "inspect", DEPLOYMENT)  # the environment `make serve` had, with the string
    assert "'name': 'mnist-sample'" in client.stdout


def test_a_data_landed_event_triggers_a_run_that_completes_and_sends_heartbeats(served, tmp_path):
    drop = tmp_path / "new-digits"
    tilted_digits(drop)
    since = datetime.now(timezone.utc)

    emitted = run(["python", "-m", "orchestration.inbox", "--dataset", "mnist-sample", "--from", str(drop)],
                  served.root, env=served.environment())
    (flow_run,) = wait_final(served, since, 400)

    assert f"event {DROP_EVENT}" in emitted.stdout
    assert flow_run.state.name == "Completed", flow_run.state  # the worker and the flow run were let in
    assert events_of(served, "prefect.flow-run.heartbeat", f"prefect.flow-run.{flow_run.id}")
    assert events_of(served, DROP_EVENT, dataset_resource("mnist-sample"))  # sent over the websocket, with auth


def test_a_failed_run_sends_its_notification(served):
    Receiver.received.clear()
    overrides = json.dumps({"overrides": {"train.epochs": -1}})  # refused by the flow: the run fails at once

    output = run_cli(served, "deployment", "run", DEPLOYMENT, "--params", overrides, "--watch",
                     "--watch-timeout", "300", check=False).stdout
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    deadline = time.monotonic() + 90
    while not Receiver.received and time.monotonic() < deadline:
        time.sleep(0.5)

    assert "Failed" in output, output
    (notification,) = Receiver.received
    with api_client(served, SECRET) as client:
        name = client.read_flow_run(flow_run_id).name
    assert f"Flow run: {name}, Failed" in notification["body"]["body"]


def test_the_string_is_in_no_log_no_file_and_no_command_line(served):
    """Issue 26: secrets live in the environment, never in the repository, the logs or what `ps` shows (the server,
    the worker and its loop run now)."""
    token = base64.b64encode(SECRET.encode()).decode()
    commands = process_command_lines()
    logs = "".join(path.read_text(errors="replace") for path in (served.home / "logs").glob("*.log"))
    files = "".join(path.read_text(errors="replace") for path in served.home.glob("*.toml"))
    tracked = run(["git", "grep", "-I", "-l", SECRET.split(":")[1]], served.root, check=False).stdout
    with api_client(served, SECRET) as client:
        from prefect.client.schemas.filters import LogFilter

        flow_run_logs = " ".join(entry.message for entry in client.read_logs(LogFilter(), limit=200))

    assert "orchestration.worker --pool" in commands and "server start" in commands
    for text in (logs, files, flow_run_logs, commands):
        assert SECRET not in text and token not in text and SECRET.split(":")[1] not in text
    assert tracked == ""


def test_a_terminal_without_the_string_is_told_what_to_set(served):
    """`make flow` from a shell that lacks the string: one line before the flow starts, not 401 tracebacks."""
    environment = {**served.environment(), AUTH_VARIABLE: ""}
    refused = run(["python", "-m", "flows.training", "--dataset", "mnist-sample"], served.root, check=False,
                  env=environment)

    assert refused.returncode == 1, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1] == (
        f"training-pipeline failed for mnist-sample: ServeError: the Prefect API at {served.api_url} refuses this "
        "request (401 Unauthorized): set PREFECT_API_AUTH_STRING as for `make serve`")
