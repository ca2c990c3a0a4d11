"""Where a served Prefect lives (`make serve`): its home, address and repository, and the processes it started.

Shared by `make serve`/`make stop` (serve.py) and `make status` (status.py), which import it and not each other.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 4200
# Every flow run the worker starts sends a heartbeat this often (Prefect's minimum); automations.yaml crashes a run
# whose heartbeats stop (a killed process, with no worker left to report it).
HEARTBEAT_SECONDS = 30
# How often a worker asks the server for runs to start (Prefect's default: 10 s, most of a no-op run's 17 s from its
# creation to its end). One query a second per worker; the pickup delay is measured in `make bench`.
WORKER_POLLING = {"PREFECT_WORKER_QUERY_SECONDS": "1"}
# `make serve` starts the worker again this long after it exits, however it exits (serve.py, worker_command).
WORKER_RESTART_SECONDS = 2


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


def deliver_queued_events(timeout_seconds: float = 10) -> bool:
    """Wait (at most `timeout_seconds`) until the events this process has queued, its heartbeats among them, have
    been sent to the server; whether they were. A flow run calls it before it ends: a heartbeat that reached the
    server's triggers after the run's final state opened a new 90-s window of the heartbeat automation, which then
    tried to crash a run already Completed (`Action failed: ... already in terminal state COMPLETED`, issue 27 item
    7: seen in a served test whose heartbeat sat queued while the run's last stages held the CPU)."""
    import threading

    from prefect.events.worker import EventsWorker, should_emit_events

    def wait() -> None:
        try:
            EventsWorker.instance().wait_until_empty()
        except Exception as error:  # never the run's own outcome: the events are Prefect's to retry or drop
            logging.getLogger(__name__).warning("events not confirmed sent: %s: %s", type(error).__name__, error)

    if not should_emit_events():
        return True
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(timeout_seconds)
    return not waiter.is_alive()


def detach_from_worker() -> Path | None:
    """In a flow run that a worker started: point this process's output (stdout and stderr) at the worker's own
    output, its log file or its terminal, instead of the pipe the worker reads and copies there. A write to a pipe
    nobody reads fails, so a worker killed mid-run took its run down with it (BrokenPipeError in training, issue 27
    item 2); the file or terminal outlives the worker. Only when this process's output is pipes and the worker's is
    a file or a terminal (Linux's /proc tells); otherwise (a container's output, a run in a terminal) nothing
    changes. Returns where the output now goes, or None."""
    parent = os.getppid()
    if parent == 1 or not all(stat.S_ISFIFO(os.fstat(descriptor).st_mode) for descriptor in (1, 2)):
        return None  # (a parent of 1: the worker is gone already, and init's output is no worker's)
    try:
        worker_output = Path(os.readlink(f"/proc/{parent}/fd/1"))
        mode = worker_output.stat().st_mode
    except OSError:  # not Linux, or the worker is gone already
        return None
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(worker_output, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY)
    for standard in (1, 2):
        os.dup2(descriptor, standard)
    os.close(descriptor)
    return worker_output
