"""The flow started from a terminal (`make flow`, `python -m flows.training`) on a fresh clone, with no server
configured (issue 16): it reports to a server of its own, which a Ctrl-C does not reach.

Before, Prefect's temporary server did not start on a new PREFECT_HOME within its 20 s ("Timed out while
attempting to connect to ephemeral Prefect API server", every time on this project's 2-core machine), and a Ctrl-C
in training stopped that server with the run: a minute of connection-refused tracebacks, then a hang. Slow (a real
training run): `make test-slow`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.integration.repo import VENV_BIN, copy_repository

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Long enough a run to be interrupted in training: every epoch, no threshold to stop early.
LONG = {"data.mnist-sample.threshold": 1.0, "data.mnist-sample.train.epochs": 40}


def test_ctrl_c_in_training_is_one_line_and_leaves_nothing_running(tmp_path):
    repo = copy_repository(tmp_path / "repo", lambda document: document.update(datasets=["mnist-sample"]))
    params_before = (repo / "params.yaml").read_bytes()
    home = tmp_path / "fresh-prefect-home"  # as on a fresh clone: no database yet
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    environment.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                       PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    command = [str(VENV_BIN / "python"), "-m", "flows.training", "--dataset", "mnist-sample", "--force",
               "--overrides", json.dumps(LONG)]
    # A session of its own, as a terminal's foreground job: Ctrl-C sends SIGINT to every process in it.
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        # Ctrl-C as in a terminal: not ignored, even when the tests themselves run as a background job (which
        # starts with SIGINT ignored, and a Python started so keeps ignoring it).
        flow = subprocess.Popen(command, cwd=repo, env=environment, stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 400
        while "Epoch 3/" not in (tmp_path / "out").read_text() and flow.poll() is None:
            assert time.monotonic() < deadline, (tmp_path / "err").read_text()[-3000:]
            time.sleep(0.5)
        assert flow.poll() is None, (tmp_path / "err").read_text()[-3000:]  # it started: its server answered

        os.killpg(flow.pid, signal.SIGINT)
        code = flow.wait(timeout=90)
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()

    errors = (tmp_path / "err").read_text()
    last = errors.strip().splitlines()[-1]
    assert code == 130, errors[-3000:]
    assert last.startswith("training-pipeline interrupted for mnist-sample: mnist-sample: training interrupted "
                           "(Ctrl-C); a rerun resumes after epoch "), last
    assert "Traceback" not in errors and "Connection refused" not in errors
    assert list((home / "pids").iterdir()) == []  # the run's server was stopped, by PID
    assert (repo / "params.yaml").read_bytes() == params_before  # never held the run's overrides
    assert (repo / "data/overrides/mnist-sample.yaml").read_text() == "{}\n"  # they went with the run
    assert not (repo / "models/mnist-sample/production/model.keras").exists()  # nothing was promoted


def test_the_runs_server_dies_with_it_when_it_is_killed(tmp_path):
    """A closed terminal or `kill -9` of `make flow` gives no cleanup a chance: the run's server, in a session of its
    own, must still not outlive it (Linux's parent-death signal)."""
    repo = copy_repository(tmp_path / "repo", lambda document: document.update(datasets=["mnist-sample"]))
    home = tmp_path / "prefect-home"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    environment.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                       PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    flow = subprocess.Popen([str(VENV_BIN / "python"), "-m", "flows.training", "--dataset", "mnist-sample"], cwd=repo,
                            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list(home.glob("pids/temporary-server-*.pid")):
            assert time.monotonic() < deadline and flow.poll() is None, "the run's server never started"
            time.sleep(0.2)
        (pid_file,) = home.glob("pids/temporary-server-*.pid")
        server = int(pid_file.read_text())
        time.sleep(2)
    finally:
        flow.kill()  # kill -9: no finally block, no signal handler runs in the flow's process
        flow.wait()

    deadline = time.monotonic() + 30
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(server), f"the run's server (pid {server}) outlived its run"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
