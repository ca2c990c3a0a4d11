"""A real PostgreSQL server for the tests, started from Debian's `postgresql` binaries (not a mock, not a server
left running by hand): `initdb` in a temporary folder, a free loopback port, stopped by PID at the end of the test
session. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (`runuser`), in a folder that
user owns. Each served Prefect gets a database of its own (`new_database`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"


@dataclass
class PostgresServer:
    folder: Path
    port: int
    pid: int
    bindir: Path
    _names = itertools.count(1)

    def new_database(self, name: str = "prefect") -> str:
        """Create an empty database; its SQLAlchemy URL for Prefect (PREFECT_SERVER_DATABASE_CONNECTION_URL)."""
        database = f"{name.replace('-', '_')}_{next(self._names)}"
        subprocess.run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
                        database], check=True, capture_output=True, timeout=60)
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self, timeout_seconds: float = 30) -> None:
        """Fast shutdown by PID (SIGINT: the server ends its sessions and stops), then the folder goes."""
        try:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + timeout_seconds
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.2)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def start_postgres() -> PostgresServer:
    bindir = Path(subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True, text=True).stdout.strip())
    as_owner: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="pipeline-tests-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(folder, SUPERUSER, SUPERUSER)
        as_owner = ["runuser", "-u", SUPERUSER, "--"]
    data, log = folder / "data", folder / "server.log"
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, timeout=120)
    from tests.prefect_server import free_port  # here: prefect_server imports this module

    port = free_port()
    started = subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                              "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200",
                              "start"], capture_output=True, text=True, timeout=90)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        log_text = log.read_text() if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}{log_text}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return PostgresServer(folder=folder, port=port, pid=pid, bindir=bindir)


_shared: PostgresServer | None = None


def shared_postgres() -> PostgresServer:
    """The test session's one PostgreSQL server, started on first use; `stop_shared_postgres` (conftest.py, at the
    session's end) stops it."""
    global _shared
    if _shared is None:
        _shared = start_postgres()
    return _shared


def stop_shared_postgres() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None
