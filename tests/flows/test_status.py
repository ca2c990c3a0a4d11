"""`make status` where nothing answers: it says so, lists the services' errors of the last hour, and exits 1.

The same command on a live server, with deployments, a worker and scheduled runs, is checked in
tests/integration/test_schedules.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flows.serve import Service, main
from tests.flows.test_server_log import BULK_DML, SQLALCHEMY_21_LOG
from tests.prefect_server import free_port


def dated_scheduler_failure(moment: datetime) -> str:
    """The scheduler failure of the sqlalchemy 2.1.9 server's log, as `make serve` dates it, at `moment`."""
    lines = SQLALCHEMY_21_LOG.read_text().splitlines()
    start = next(number for number, line in enumerate(lines) if "| ERROR" in line)
    end = next(number for number, line in enumerate(lines) if line == BULK_DML)
    header = lines[start].split(" | ", 1)[1]
    return "\n".join([f"{moment:%Y-%m-%d %H:%M:%S}.597 | {header}", *lines[start + 1:end + 1]]) + "\n"


def test_status_without_a_server_names_what_is_down_and_this_hours_errors(tmp_path, monkeypatch, capsys):
    service = Service(home=tmp_path / "prefect", root=tmp_path, port=free_port())
    service.log_file("server").parent.mkdir(parents=True)
    now = datetime.now()
    service.log_file("server").write_text(dated_scheduler_failure(now - timedelta(hours=2))
                                          + dated_scheduler_failure(now - timedelta(minutes=5)))
    monkeypatch.setenv("PREFECT_HOME", str(service.home))
    monkeypatch.chdir(tmp_path)

    code = main(["status", "--port", str(service.port)])

    output = capsys.readouterr().out
    assert code == 1
    assert f"server:  {service.api_url}: not answering" in output
    assert f"no worker process of `make serve` ({service.pid_file('worker')})" in output
    assert f"service errors in the last 1 h ({service.log_file('server')}): 1\n" in output
    assert f"ERROR docket.dependencies - ↩ [    65ms] schedule_recent_deployments()" in output
    assert output.count(BULK_DML) == 1  # the failure two hours ago is not listed
    assert output.rstrip().endswith("status: NOT OK")
