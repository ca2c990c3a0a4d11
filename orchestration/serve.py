"""`make serve` / `make stop` / `make status`: a Prefect server on loopback, the work pool, deployments, a worker.

Everything lives under PREFECT_HOME (default: the project's .prefect/): the server's database, logs and
the PID files `stop` uses to end exactly what `serve` started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestration.automations import apply_automations
from orchestration.server_log import DATE_FORMAT

WORK_POOL = "training"
DEFAULT_PORT = 4200
PROCESS_NAMES = ("worker", "server")


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
                "PIPELINE_ROOT": str(self.root), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def prefect_command(*arguments: str) -> list[str]:
    """The prefect CLI of this interpreter's environment."""
    return [str(Path(sys.executable).with_name("prefect")), *arguments]


def start_process(service: Service, name: str, command: list[str], environment: dict[str, str]) -> int:
    for folder in (service.pid_file(name).parent, service.log_file(name).parent):
        folder.mkdir(parents=True, exist_ok=True)
    with open(service.log_file(name), "ab") as log:
        process = subprocess.Popen(command, cwd=service.root, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    service.pid_file(name).write_text(str(process.pid))
    return process.pid


def wait_for_server(service: Service, timeout_seconds: float = 120) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{service.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"Prefect server at {service.api_url} did not answer within {timeout_seconds:.0f} s; "
                       f"see {service.log_file('server')}")


def run_cli(service: Service, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run(prefect_command("--no-prompt", *arguments), cwd=service.root,
                               env=service.environment(), capture_output=True, text=True, timeout=300)
    if check and completed.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(arguments)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed


def start_server(service: Service) -> None:
    """Start the server alone (its log: `service.log_file("server")`) and wait until it answers."""
    server_environment = {key: value for key, value in service.environment().items() if key != "PREFECT_API_URL"}
    # Dated log lines, so that `make status` can tell this hour's errors from older ones.
    server_environment["PREFECT_LOGGING_FORMATTERS_STANDARD_DATEFMT"] = DATE_FORMAT
    start_process(service, "server", prefect_command("server", "start", "--host", service.host,
                                                     "--port", str(service.port)), server_environment)
    wait_for_server(service)


def serve(service: Service) -> None:
    """Start the server, create the work pool if missing, deploy prefect.yaml, create or update the failure
    notifications (automations.yaml) and start a worker."""
    if any(is_running(service, name) for name in PROCESS_NAMES):
        raise RuntimeError(f"already serving from {service.home} (run `make stop` first)")
    start_server(service)
    if run_cli(service, "work-pool", "inspect", WORK_POOL, check=False).returncode != 0:
        run_cli(service, "work-pool", "create", WORK_POOL, "--type", "process")
    run_cli(service, "config", "set", f"PREFECT_API_URL={service.api_url}")
    hold_queued_runs(service)
    run_cli(service, "deploy", "--all")
    apply_automations(service.api_url, service.root, service.environment())  # failure notifications, by name
    start_process(service, "worker", prefect_command("worker", "start", "--pool", WORK_POOL),
                  service.environment())


def queue_limits(prefect_file: Path) -> dict[tuple[str, str], int]:
    """(work pool, work queue) -> the run limit of the deployment that queue serves, from prefect.yaml."""
    limits: dict[tuple[str, str], int] = {}
    for deployment in yaml.safe_load(prefect_file.read_text())["deployments"]:
        queue = (deployment["work_pool"]["name"], deployment["work_pool"]["work_queue_name"])
        if queue in limits:
            raise ValueError(f"{prefect_file}: deployments.{deployment['name']}.work_pool: work queue {queue[1]!r} "
                             f"is already another deployment's; each deployment needs a queue of its own")
        limits[queue] = deployment["concurrency_limit"]["limit"]
    return limits


def hold_queued_runs(service: Service) -> None:
    """Give each deployment's work queue the deployment's own run limit.

    A deployment's concurrency limit alone lets the worker pick up every queued run, have it refused and
    rescheduled: with 19 runs waiting, that is a few SQLite writes a second, enough for the server to answer 503
    and the worker to crash runs it could not submit (the load test, `make test-slow`, in CI on 2026-12-02). A
    queue's limit is applied by the server's query for scheduled runs, so waiting runs are not touched at all.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        for (pool, queue), limit in queue_limits(service.root / "prefect.yaml").items():
            try:
                existing = client.read_work_queue_by_name(queue, work_pool_name=pool)
            except ObjectNotFound:
                client.create_work_queue(queue, work_pool_name=pool, concurrency_limit=limit)
            else:
                client.update_work_queue(existing.id, concurrency_limit=limit)


def is_running(service: Service, name: str) -> bool:
    try:
        os.kill(int(service.pid_file(name).read_text()), 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False


def stop(service: Service, timeout_seconds: float = 20) -> list[str]:
    """End the worker and the server that `serve` started (their whole process groups), by PID file, and take
    the server's address out of the project's Prefect profile, so that every target runs as before serving."""
    forget_api_url(service)
    stopped = []
    for name in PROCESS_NAMES:
        pid_file = service.pid_file(name)
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        pid_file.unlink()
        stopped.append(name)
    return stopped


def forget_api_url(service: Service) -> None:
    """Unset PREFECT_API_URL in the active profile of PREFECT_HOME when it is this service's address (`serve`
    set it there, for the prefect CLI); an address the user set for another server is left alone."""
    profiles_file = service.home / "profiles.toml"
    if not profiles_file.exists():
        return
    document = tomllib.loads(profiles_file.read_text())
    active = document.get("active", "ephemeral")
    if document.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") == service.api_url:
        run_cli(service, "config", "unset", "PREFECT_API_URL")


def _signal_group(pid: int, signal_number: int) -> None:
    try:
        os.killpg(pid, signal_number)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.serve", description=__doc__)
    parser.add_argument("action", choices=["serve", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_SERVER_PORT", DEFAULT_PORT)))
    arguments = parser.parse_args(argv)
    root = Path.cwd()
    service = Service(home=Path(os.environ.get("PREFECT_HOME", root / ".prefect")), root=root, port=arguments.port)
    if arguments.action == "stop":
        print("stopped: " + (", ".join(stop(service)) or "nothing was running"))
        return 0
    if arguments.action == "status":
        from orchestration.status import read_status, render

        status = read_status(service)
        print(render(status))
        return 0 if status.healthy else 1
    from orchestration.status import render, wait_until_settled

    serve(service)
    status = wait_until_settled(service)
    print(f"{render(status)}\n\n"
          f"Prefect UI:   http://{service.host}:{service.port}\n"
          f"Run a deployment now:\n  make deployment-run DATASET=fashion-mnist\n"
          f"  (or: PREFECT_HOME={service.home} {prefect_command()[0]} deployment run "
          f"'training-pipeline/fashion-mnist')\n"
          f"Check on it: make status. Logs: {service.home / 'logs'}; stop with: make stop")
    return 0 if status.healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
