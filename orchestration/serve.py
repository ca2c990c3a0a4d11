"""`make serve` / `make stop` / `make status`: a Prefect server on loopback, the work pool, deployments, a worker.

Everything lives under PREFECT_HOME (default: the project's .prefect/): the server's database, logs and
the PID files `stop` uses to end exactly what `serve` started.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from orchestration.automations import apply_automations
from orchestration.deployments import (PROCESS_POOL, WORK_POOL, Applied, apply_deployments, check_schedules,
                                       clone_pool)
from orchestration.server_log import DATE_FORMAT
from orchestration.service import DEFAULT_PORT, WORKER_POLLING, WORKER_RESTART_SECONDS, Service, is_running
from tasks.common.config import load_params
from tasks.common.errors import PipelineError
from tasks.common.paths import PARAMS_FILE

PROCESS_NAMES = ("worker", "server")
# Concurrency slots are leases. Prefect keeps them in memory by default, so a server killed during a run lost the
# lease and the deployment's slot stayed taken after the restart; on disk (PREFECT_HOME/concurrency_leases) they
# survive it, and the server's repossessor expires the lease of a run that died.
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
# Basic auth for the API, off unless this is set: one variable, the client's. `make serve` gives the server the same
# string (PREFECT_SERVER_API_AUTH_STRING); the worker, the flow runs it starts and every CLI call inherit it from the
# environment. It is never written to a file (the profile holds the address only) nor logged.
AUTH_VARIABLE = "PREFECT_API_AUTH_STRING"
SERVER_AUTH_VARIABLE = "PREFECT_SERVER_API_AUTH_STRING"
HOST_VARIABLE = "PIPELINE_SERVE_HOST"
# Clone mode (docs/SCALING.md): each flow run clones this git remote (and branch) instead of starting in the
# checkout that served, and pushes back what it made.
GIT_REMOTE_VARIABLE, GIT_BRANCH_VARIABLE = "PIPELINE_GIT_REMOTE", "PIPELINE_GIT_BRANCH"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeError(PipelineError):
    """The served Prefect cannot be used as asked; the message says why and what to do."""


def check_auth(host: str, environment: Mapping[str, str]) -> None:
    """Refuse a server that would answer strangers (bound beyond loopback without auth), and a server string the
    clients do not share (the worker and the flow runs would be refused by their own server)."""
    client, server = environment.get(AUTH_VARIABLE), environment.get(SERVER_AUTH_VARIABLE)
    if server is not None and server != client:
        raise ServeError(f"{SERVER_AUTH_VARIABLE} is set but {AUTH_VARIABLE} is "
                         f"{'not set' if client is None else 'another string'}: the worker and the flow runs would be "
                         f"refused by the server; set only {AUTH_VARIABLE} (make serve gives the server the same)")
    if client is not None and ":" not in client:
        raise ServeError(f"{AUTH_VARIABLE}: expected 'user:password' (Prefect's basic auth), found a string without "
                         "':'")
    if host not in LOOPBACK and not client:
        raise ServeError(f"{HOST_VARIABLE}={host}: a server beyond loopback must require auth; set {AUTH_VARIABLE}="
                         "'user:a-long-password' first (docs/OPERATIONS.md, Security)")


def prefect_command(*arguments: str) -> list[str]:
    """The prefect CLI of this interpreter's environment."""
    return [str(Path(sys.executable).with_name("prefect")), *arguments]


def worker_command(restart_seconds: float = WORKER_RESTART_SECONDS) -> list[str]:
    """Prefect's worker (`prefect worker start` by orchestration/worker.py, which says whether a killed flow run
    was ended by the out-of-memory killer) in a shell loop that starts it again `restart_seconds` after it exits,
    however it exits (`kill -9`, out of memory), so the worker is back in seconds without anyone typing a command.
    Prefect has no such mechanism and these machines no systemd, so it is this loop, not more code of ours; where
    systemd runs, a unit with `Restart=always` and `KillMode=process` does the same. A run in progress lives on
    meanwhile (flows/training.py takes its output off the worker's pipe). `make stop` ends the loop with the worker:
    they are one process group. A worker that fails at once is started again every few seconds, each time in its log."""
    worker = shlex.join([sys.executable, "-m", "orchestration.worker", "--pool", WORK_POOL])
    return ["sh", "-c", f'while :; do {worker}; echo "the worker exited ($?); starting it again in '
                        f'{restart_seconds:g} s"; sleep {restart_seconds:g}; done']


def start_process(service: Service, name: str, command: list[str], environment: dict[str, str],
                  die_with_parent: bool = False) -> int:
    """Start `command` in a session of its own (a Ctrl-C in the terminal does not reach it), its output in its log
    and its PID in its PID file; with `die_with_parent`, Linux ends it when this process dies, `kill -9` included."""
    for folder in (service.pid_file(name).parent, service.log_file(name).parent):
        folder.mkdir(parents=True, exist_ok=True)
    with open(service.log_file(name), "ab") as log:
        process = subprocess.Popen(command, cwd=service.root, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent if die_with_parent else None)
    service.pid_file(name).write_text(str(process.pid))
    return process.pid


def _die_with_parent() -> None:
    """In the child, before it runs the command: ask Linux for SIGTERM when its parent dies (PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup is all there is
        pass


def wait_for_server(service: Service, timeout_seconds: float = 120, log_name: str = "server") -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{service.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"Prefect server at {service.api_url} did not answer within {timeout_seconds:.0f} s; "
                       f"see {service.log_file(log_name)}")


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
    server_environment["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = LEASE_STORAGE
    if server_environment.get(AUTH_VARIABLE):
        server_environment[SERVER_AUTH_VARIABLE] = server_environment[AUTH_VARIABLE]
    start_process(service, "server", prefect_command("server", "start", "--host", service.host,
                                                     "--port", str(service.port)), server_environment)
    wait_for_server(service)


def serve(service: Service) -> tuple[list[str], Applied]:
    """Start what is not running: the server, then (again, idempotently) the work pool, the deployment of every
    dataset params.yaml lists (orchestration/deployments.py), automations.yaml's automations, and a worker. So
    `make serve` after a crash (a killed server or worker) brings back what died and leaves the rest alone; serving
    twice changes nothing, a paused schedule included. Returns what it started, and what it deployed."""
    check_auth(service.host, service.environment())
    params = load_params(service.root / PARAMS_FILE)  # a bad params.yaml stops here, before anything starts
    check_schedules(params)
    started = []
    if not (is_running(service, "server") and answers(service)):
        _stop_one(service, "server")  # a server that no longer answers, or the PID file of a killed one
        start_server(service)
        started.append("server")
    if run_cli(service, "work-pool", "inspect", WORK_POOL, check=False).returncode != 0:
        run_cli(service, "work-pool", "create", WORK_POOL, "--type", "process")
    run_cli(service, "config", "set", f"PREFECT_API_URL={service.api_url}")
    environment = service.environment()
    pool = (clone_pool(environment[GIT_REMOTE_VARIABLE], environment.get(GIT_BRANCH_VARIABLE) or "main")
            if environment.get(GIT_REMOTE_VARIABLE) else PROCESS_POOL)
    applied = apply_deployments(service.api_url, service.root, params, pool)
    apply_automations(service.api_url, service.root, service.environment())  # by name: never duplicated
    if not is_running(service, "worker"):
        start_process(service, "worker", worker_command(), {**service.environment(), **WORKER_POLLING})
        started.append("worker")
    return started, applied


@contextmanager
def terminal_api(root: Path, timeout_seconds: float = 120) -> Iterator[str]:
    """The Prefect API a flow started from the terminal (`make flow`, `make sweep`) reports to: the configured one
    (PREFECT_API_URL: `make serve`'s, or a deployment run's), else a server of this run's own, on a free loopback
    port with PREFECT_HOME's database, stopped by PID when the run ends.

    Not Prefect's temporary server, for two reasons seen on a fresh clone: it shares the terminal's process group,
    so a Ctrl-C stopped it together with the run, which then could not report its end (a minute of connection
    errors, then a hang); and it is given 20 s to start (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS), which a
    new PREFECT_HOME's database migrations exceed on 2 cores (20 to 22 s measured). This one runs in a session of its
    own, without the UI, and is given `timeout_seconds`."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    if PREFECT_API_URL.value():
        check_answers(PREFECT_API_URL.value())
        yield PREFECT_API_URL.value()
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = Service(home=Path(PREFECT_HOME.value()), root=root, port=port)
    name = f"temporary-server-{port}"
    environment = {key: value for key, value in service.environment().items() if key != "PREFECT_API_URL"}
    environment["PREFECT_UI_ENABLED"] = "false"
    # It dies with this process however this process ends (a closed terminal, `kill -9`): nothing is left running.
    start_process(service, name, prefect_command("server", "start", "--host", service.host, "--port", str(port)),
                  environment, die_with_parent=True)
    started = False
    try:
        try:
            wait_for_server(service, timeout_seconds, log_name=name)
        except RuntimeError as error:
            raise ServeError(str(error)) from None
        started = True
        with temporary_settings({PREFECT_API_URL: service.api_url}):
            yield service.api_url
    finally:
        _stop_after_run(service, name, started)


def _stop_after_run(service: Service, name: str, started: bool) -> None:
    """Send what the run logged and emitted last (as Prefect's own temporary server does), then stop the server;
    a second Ctrl-C meanwhile does not cut this short."""
    import threading

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        if started:
            try:
                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
            except Exception as error:  # noqa: BLE001 - the server is stopped whatever happened to the logs
                print(f"could not send the run's last logs: {error}", file=sys.stderr)
        _stop_one(service, name)
        if started:  # a server that did not start keeps its log, which the error names
            service.log_file(name).unlink(missing_ok=True)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


def check_answers(api_url: str) -> None:
    """A configured API that does not answer (a served Prefect killed without `make stop`) is one line saying what
    to do, before the flow starts: not Prefect's three tracebacks ending `Failed to reach API`."""
    from prefect.client.orchestration import get_client

    import httpx

    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()
        if error is not None:
            raise ServeError(f"the Prefect API at {api_url} does not answer ({type(error).__name__}: {error}); start "
                             "it again with `make serve`, or `make stop` to run without it")
        try:
            client.hello()  # /health needs no auth: this does
        except httpx.HTTPStatusError as refused:
            if refused.response.status_code != 401:
                raise
            raise ServeError(f"the Prefect API at {api_url} refuses this request (401 Unauthorized): set "
                             f"{AUTH_VARIABLE} as for `make serve`") from None


def answers(service: Service, patience_seconds: float = 20) -> bool:
    """Whether the server answers /health within `patience_seconds`: a busy server (a 503, a slow answer) is not
    taken for a dead one and restarted under its runs."""
    try:
        wait_for_server(service, patience_seconds)
        return True
    except RuntimeError:
        return False


def stop(service: Service, timeout_seconds: float = 20) -> list[str]:
    """End the worker and the server that `serve` started (their whole process groups), by PID file, and take
    the server's address out of the project's Prefect profile, so that every target runs as before serving."""
    forget_api_url(service)
    return [name for name in PROCESS_NAMES if _stop_one(service, name, timeout_seconds)]


def _stop_one(service: Service, name: str, timeout_seconds: float = 20) -> bool:
    """End one process `serve` started (its whole process group), by PID file; True if there was a PID file."""
    pid_file = service.pid_file(name)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    # The whole group: the worker's loop ends at once, the worker it runs shuts down after it.
    while time.monotonic() < deadline and (_alive(pid) or _group_alive(pid)):
        time.sleep(0.2)
    if _alive(pid) or _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    pid_file.unlink()
    return True


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


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (a zombie, which its parent has yet to reap, does not)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in proc.iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


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
    service = Service(home=Path(os.environ.get("PREFECT_HOME", root / ".prefect")), root=root, port=arguments.port,
                      host=os.environ.get(HOST_VARIABLE) or "127.0.0.1")
    if arguments.action == "stop":
        print("stopped: " + (", ".join(stop(service)) or "nothing was running"))
        return 0
    if arguments.action == "status":
        from orchestration.status import read_status, render

        status = read_status(service)
        print(render(status))
        return 0 if status.healthy else 1
    from orchestration.status import render, wait_until_settled

    try:
        started, applied = serve(service)
    except PipelineError as error:
        print(f"make serve: {error}", file=sys.stderr)
        return 1
    status = wait_until_settled(service)
    what = ", ".join(started) or "nothing (server and worker were running; deployments and automations updated)"
    removed = f"; removed (no longer in params.yaml): {', '.join(applied.removed)}" if applied.removed else ""
    paused = (f"\npaused schedules, kept paused: {', '.join(applied.paused)} (turn one on again with: prefect "
              "deployment schedule resume training-pipeline/<dataset> <schedule id>, ids from prefect deployment "
              "schedule ls)") if applied.paused else ""
    print(f"started: {what}\ndeployed: {', '.join(applied.deployed)}{removed}{paused}\n{render(status)}\n\n"
          f"Prefect UI:   http://{service.host}:{service.port}\n"
          f"Run a deployment now:\n  make deployment-run DATASET=fashion-mnist\n"
          f"  (or: PREFECT_HOME={service.home} {prefect_command()[0]} deployment run "
          f"'training-pipeline/fashion-mnist')\n"
          f"Check on it: make status. Logs: {service.home / 'logs'}; stop with: make stop")
    return 0 if status.healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
