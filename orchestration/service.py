"""Where a served Prefect lives (`make serve`): its home, address and repository, and the processes it started.

Shared by `make serve`/`make stop` (serve.py) and `make status` (status.py), which import it and not each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 4200
# Every flow run the worker starts sends a heartbeat this often (Prefect's minimum); automations.yaml crashes a run
# whose heartbeats stop (a killed process, with no worker left to report it).
HEARTBEAT_SECONDS = 30
# How often a worker asks the server for runs to start (Prefect's default: 10 s, most of a no-op run's 17 s from its
# creation to its end). One query a second per worker; the pickup delay is measured in `make bench`.
WORKER_POLLING = {"PREFECT_WORKER_QUERY_SECONDS": "1"}


@dataclass(frozen=True)
class Service:
    """Where a served Prefect lives: its home, its address, the repository its deployments run in."""

    home: Path
    root: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def pid_file(self, name: str) -> Path:
        return self.home / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}


def is_running(service: Service, name: str) -> bool:
    try:
        os.kill(int(service.pid_file(name).read_text()), 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
