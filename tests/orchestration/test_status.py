"""`make status` where nothing answers: it says so, lists the services' errors of the last hour, and exits 1.

The same command on a live server, with deployments, a worker and scheduled runs, is checked in
tests/integration/test_schedules.py.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

from orchestration.serve import Service, main
from orchestration.status import read_status
from tests.orchestration.test_server_log import BULK_DML, SQLALCHEMY_21_LOG
from tests.prefect_server import free_port


def dated_scheduler_failure(moment: datetime) -> str:
    """The scheduler failure of the sqlalchemy 2.1.9 server's log, as `make serve` dates it, at `moment`."""
    lines = SQLALCHEMY_21_LOG.read_text().splitlines()
    start = next(number for number, line in enumerate(lines) if "| ERROR" in line)
    end = next(number for number, line in enumerate(lines) if line == BULK_DML)
    header = lines[start].split(" | ", 1)[1]
    return "\n".join([f"{moment:%Y-%m-%d %H:%M:%S}.597 | {header}", *lines[start + 1:end + 1]]) + "\n"


def status_of(service: Service, monkeypatch, capsys) -> tuple[int, str]:
    """`make status` (python -m orchestration.serve status) for `service`: its exit code and output."""
    monkeypatch.setenv("PREFECT_HOME", str(service.home))
    monkeypatch.chdir(service.root)
    code = main(["status", "--port", str(service.port)])
    return code, capsys.readouterr().out


def test_status_without_a_server_names_what_is_down_and_this_hours_errors(tmp_path, monkeypatch, capsys):
    service = Service(home=tmp_path / "prefect", root=tmp_path, port=free_port())
    service.log_file("server").parent.mkdir(parents=True)
    now = datetime.now()  # the log's local time, as the server writes it
    service.log_file("server").write_text(dated_scheduler_failure(now - timedelta(hours=2))
                                          + dated_scheduler_failure(now - timedelta(minutes=5)))

    code, output = status_of(service, monkeypatch, capsys)

    assert code == 1
    assert f"server:  {service.api_url}: not answering" in output
    assert f"service errors in the last 1 h ({service.log_file('server')}): 1\n" in output
    assert "ERROR docket.dependencies - ↩ [    65ms] schedule_recent_deployments()" in output
    assert output.count(BULK_DML) == 1  # the failure two hours ago is not listed
    # Issue 27 item 12: it says when the error stops counting (it stayed NOT OK "until the next restart")...
    clears = (now - timedelta(minutes=5)).replace(microsecond=0).astimezone(timezone.utc) + timedelta(hours=1)
    assert output.rstrip().endswith(
        f"status: NOT OK: 1 service error(s) logged (counted until {clears:%Y-%m-%d %H:%M:%S} UTC, an hour after the "
        "last, or until `make serve` starts the server again); the server does not answer")
    # ...and from then on it does not.
    assert read_status(service, now=clears - timedelta(seconds=1)).errors
    assert not read_status(service, now=clears + timedelta(seconds=1)).errors


def test_errors_from_before_this_server_started_are_not_counted(tmp_path, monkeypatch, capsys):
    service = Service(home=tmp_path / "prefect", root=tmp_path, port=free_port())
    service.log_file("server").parent.mkdir(parents=True)
    service.log_file("server").write_text(dated_scheduler_failure(datetime.now() - timedelta(minutes=5)))
    service.pid_file("server").parent.mkdir(parents=True)
    service.pid_file("server").write_text("1")  # written now: this server started after that failure

    code, output = status_of(service, monkeypatch, capsys)

    assert f"({service.log_file('server')}): none\n" in output and BULK_DML not in output
    assert code == 1 and output.rstrip().endswith("status: NOT OK: the server does not answer")


def test_a_worker_that_exited_is_named(tmp_path, monkeypatch, capsys):
    service = Service(home=tmp_path / "prefect", root=tmp_path, port=free_port())
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    service.pid_file("worker").parent.mkdir(parents=True)
    service.pid_file("worker").write_text(exited.stdout.strip())

    code, output = status_of(service, monkeypatch, capsys)

    assert code == 1
    assert f"worker:  the worker `make serve` started has exited ({service.pid_file('worker')})" in output
    assert "the worker of `make serve` has exited" in output.splitlines()[-1]


def test_make_status_and_make_stop_honour_prefect_server_port(tmp_path, monkeypatch, capsys):
    """Issue 27 item 12: the port `make serve` was given in PREFECT_SERVER_PORT is the one status asks and stop
    forgets (no --port: as the Makefile calls them)."""
    service = Service(home=tmp_path / "prefect", root=tmp_path, port=free_port())
    service.home.mkdir()
    (service.home / "profiles.toml").write_text(f'active = "ephemeral"\n\n[profiles.ephemeral]\n'
                                                f'PREFECT_API_URL = "{service.api_url}"\n')
    monkeypatch.setenv("PREFECT_HOME", str(service.home))
    monkeypatch.setenv("PREFECT_SERVER_PORT", str(service.port))
    monkeypatch.chdir(tmp_path)

    assert main(["status"]) == 1
    assert f"server:  {service.api_url}: not answering" in capsys.readouterr().out
    assert main(["stop"]) == 0
    assert "PREFECT_API_URL" not in (service.home / "profiles.toml").read_text()  # the address serve set, forgotten


def test_the_heartbeat_automations_refusals_are_counted_apart_and_are_no_error(tmp_path, monkeypatch, capsys):
    """Routine in the log (HEARTBEAT_ACTION_ON_FINISHED_RUN), yet counted: a flood of them would show."""
    service = Service(home=tmp_path / "prefect", root=tmp_path, port=free_port())
    service.log_file("server").parent.mkdir(parents=True)
    now = datetime.now()
    refused = ("{:%Y-%m-%d %H:%M:%S}.120 | WARNING | prefect.server.events.actions - Action failed: 'Failed to set "
               "state: Run is already in terminal state {}.'\n")
    service.log_file("server").write_text(refused.format(now - timedelta(hours=2), "COMPLETED")
                                          + refused.format(now - timedelta(minutes=9), "COMPLETED")
                                          + refused.format(now - timedelta(minutes=3), "FAILED"))

    code, output = status_of(service, monkeypatch, capsys)

    assert "runs already ended that the heartbeat automation tried to crash (Prefect refused; harmless, " \
           "docs/RELIABILITY.md): 2\n" in output
    assert f"service errors in the last 1 h ({service.log_file('server')}): none\n" in output
    assert output.rstrip().endswith("status: NOT OK: the server does not answer")

