"""Prefect servers started by the tests, and the check that they ran clean.

A server's services report their failures only in its log (the scheduler failed on every pass for weeks while
/health answered 200), so every server a test starts is read when it stops: any ERROR or traceback fails the
test unless the test's own `expected` allows it, or, on SQLite only, `orchestration.server_log.ROUTINE` (Prefect's
errors routine there, each with its reason), or on either database `ROUTINE_ON_ANY_DATABASE` (one, with its reason).

- `serving(service)`: a server, work pool, deployments and worker started as `make serve` does, on a database of
  its own in the session's PostgreSQL server (tests/postgres.py), or on SQLite with `database="sqlite"`; its log
  is `service.log_file("server")`.
- `checked_log(log_file, stop_server=...)`: the same check around a server started some other way.
- `served_mnist_sample(...)`: `serving` for a copy of the repository that builds mnist-sample only.
- `api_client(service)`: a Prefect client of the served API (with an auth string, where the server wants one).
- `temporary_server()`: Prefect's test harness, the temporary server Prefect starts in the test process. That
  server writes to the test process's standard streams, so the harness is entered with both streams pointed at
  a file of its own, which the server process keeps after they are restored.
`conftest.py` fails any test that leaves a temporary server running that did not come from here.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from orchestration.serve import Service, serve, stop
from orchestration.service import WORKER_POLLING
from orchestration.server_log import DATABASE_URL_VARIABLE, RoutineError, read_service_errors

# How often a worker polls (as `make serve`'s), and, only to keep the suite short, how long a run that found its
# deployment's concurrency slot taken waits before it asks again (Prefect's default: 30 s).
FAST_POLLING = {**WORKER_POLLING, "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}
# The ports of the temporary servers started by `temporary_server` (checked when they stop).
CHECKED_TEMPORARY_PORTS: set[int] = set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_no_service_errors(log_file: Path, expected: tuple[RoutineError, ...] = (),
                             database: str = "sqlite") -> None:
    errors = _described_errors(log_file, expected, database)
    assert not errors, errors


def _described_errors(log_file: Path, expected: tuple[RoutineError, ...], database: str) -> str:
    errors = read_service_errors(log_file, expected, database=database)
    if not errors:
        return ""
    return (f"the Prefect server ({database}) logged {len(errors)} unexpected error(s) in {log_file}:\n"
            + "\n".join(error.summary() for error in errors))


@contextmanager
def checked_log(log_file: Path, expected: tuple[RoutineError, ...] = (), *, stop_server,
                database: str = "sqlite") -> Iterator[None]:
    """Run the body, call `stop_server`, then check the log; when the body failed, its error carries the
    server's errors as a note (a scheduler that never ran is often why)."""
    try:
        yield
    except BaseException as error:
        stop_server()
        described = _described_errors(log_file, expected, database)
        if described:
            error.add_note(described)
        raise
    try:
        stop_server()
    finally:
        assert_no_service_errors(log_file, expected, database)


def database_environment(database: str, name: str = "prefect") -> dict[str, str]:
    """What points a Prefect server at `database`: a new database in the session's PostgreSQL server, or nothing
    (SQLite in PREFECT_HOME, Prefect's default)."""
    from tests.postgres import shared_postgres

    if database == "sqlite":
        return {}
    assert database == "postgresql", database
    return {DATABASE_URL_VARIABLE: shared_postgres().new_database(name)}


@contextmanager
def serving(service: Service, expected: tuple[RoutineError, ...] = (),
            environment: dict[str, str] | None = None, database: str = "postgresql") -> Iterator[Service]:
    """`make serve` for `service` on `database` (postgresql: a database of its own in the session's server), with
    `environment` added to what the server and worker see; on the way out `make stop`, then the check of the
    server's log (on PostgreSQL, none of SQLite's routine errors is allowed)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**database_environment(database), **(environment or {})}.items():
            patch.setenv(name, value)
        with checked_log(service.log_file("server"), expected, stop_server=lambda: stop(service), database=database):
            serve(service)
            yield service


@contextmanager
def served_mnist_sample(tmp_path_factory, name: str, environment: dict[str, str] | None = None,
                        edit_params=None, expected: tuple[RoutineError, ...] = (),
                        database: str = "postgresql") -> Iterator[Service]:
    """A copy of the repository that builds mnist-sample only, for a few epochs (then `edit_params(document)`),
    served as `make serve` does with `environment`; stopped and its log checked on the way out (`expected`: errors
    it may hold)."""
    from tests.integration.repo import copy_repository, mnist_sample_only

    def edit(document: dict) -> None:
        mnist_sample_only(document)
        if edit_params:
            edit_params(document)

    repo = copy_repository(tmp_path_factory.mktemp(f"{name}-repo"), edit)
    service = Service(home=tmp_path_factory.mktemp(f"{name}-prefect-home"), root=repo, port=free_port())
    with serving(service, expected, environment=environment, database=database):
        yield service


@contextmanager
def api_client(service: Service, auth: str | None = None):
    """A synchronous Prefect client of `service`'s API, sending `auth` (PREFECT_API_AUTH_STRING) when given."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings = {PREFECT_API_URL: service.api_url, **({PREFECT_API_AUTH_STRING: auth} if auth else {})}
    with temporary_settings(settings), get_client(sync_client=True) as client:
        yield client


@contextmanager
def temporary_server(expected: tuple[RoutineError, ...] = ()) -> Iterator[Path]:
    """`prefect_test_harness` with the server's output in a log file (yielded), checked once the server stopped."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    handle, name = tempfile.mkstemp(prefix="prefect-temporary-server-", suffix=".log")
    os.close(handle)
    log_file = Path(name)
    harness = ExitStack()
    with checked_log(log_file, expected, stop_server=harness.close):
        with _standard_streams_to(log_file):
            harness.enter_context(prefect_test_harness(server_startup_timeout=120))
        CHECKED_TEMPORARY_PORTS.add(SubprocessASGIServer._instances[None].port)
        yield log_file
    log_file.unlink()  # kept only when the check fails, for reading


@contextmanager
def _standard_streams_to(log_file: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at `log_file` (for the processes started meanwhile), then restore them."""
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(log_file, os.O_WRONLY | os.O_APPEND)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (target, *saved):
            os.close(descriptor)


def process_command_lines() -> str:
    """What `ps` shows of every process on this machine now: their command lines, one a line."""
    lines = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # ended meanwhile
            continue
    return "\n".join(lines)
