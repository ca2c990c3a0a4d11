"""The check every Prefect server of the tests goes through (tests/prefect_server.py) sees the server's output.

The temporary server writes to the test process's standard streams; `temporary_server` points them at a file
while the server starts. With the root logger at INFO, docket reports every pass of the server's services: those
lines must reach that file, or an error logged the same way would go unseen.
"""

from __future__ import annotations

import time

import pytest

from orchestration.server_log import parse_log
from tests.prefect_server import temporary_server

pytestmark = pytest.mark.integration


def test_the_temporary_servers_service_passes_reach_its_checked_log(monkeypatch):
    monkeypatch.setenv("PREFECT_LOGGING_ROOT_LEVEL", "INFO")  # the server process inherits it
    with temporary_server() as log_file:
        deadline = time.monotonic() + 60
        while not any(record.logger == "docket.worker" and record.message.startswith("↩")
                      for record in parse_log(log_file.read_text())) and time.monotonic() < deadline:
            time.sleep(0.5)
        passes = [record.message for record in parse_log(log_file.read_text()) if record.logger == "docket.worker"]

    assert any(message.startswith("↩") for message in passes), passes[-5:]
