"""Read a Prefect server's log: its records, and the errors its services logged.

The server's services (scheduler, late runs, foreman, triggers...) run in the background and report a failure only
in this log: a scheduler that fails on every pass still answers /health. `make status` and the tests read the log
with `service_errors`, which drops the few errors of Prefect's that are routine (`ROUTINE`, each with its reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# Prefect's standard format, "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"; `make serve`
# gives asctime a date (DATE_FORMAT), Prefect's default datefmt has only the time of day.
_RECORD = re.compile(r"^(?:(?P<date>\d{4}-\d{2}-\d{2}) )?(?P<time>\d{2}:\d{2}:\d{2})\.(?P<msecs>\d{3}) \| "
                     r"(?P<level>[A-Z]+)\s* \| (?P<logger>\S+) - (?P<message>.*)$")
# What uvicorn's own log format writes ("ERROR:    Exception in ASGI application").
_UVICORN_RECORD = re.compile(r"^(?P<level>ERROR|CRITICAL):\s+(?P<message>.*)$")
ERROR_LEVELS = ("ERROR", "CRITICAL")
TRACEBACK = "Traceback (most recent call last):"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class LogRecord:
    """One record of the log: its header line and the lines that follow it (a traceback, a multi-line message)."""

    line_number: int
    level: str
    logger: str
    message: str
    time: datetime | None = None
    details: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS or TRACEBACK in self.details

    @property
    def exception(self) -> str:
        """The line naming the exception the traceback ends with ("sqlalchemy.exc.OperationalError: ..."), or ''
        without a traceback: the first unindented line after the last frame (SQLAlchemy adds lines after it)."""
        if TRACEBACK not in self.details:
            return ""
        last_frame = max(number for number, line in enumerate(self.details) if line.startswith(("  File ", TRACEBACK)))
        return next((line for line in self.details[last_frame + 1:] if line.strip() and not line.startswith(" ")),
                    "")

    def summary(self) -> str:
        when = f"{self.time:%Y-%m-%d %H:%M:%S} " if self.time else ""
        cause = f": {self.exception}" if self.exception else ""
        return f"line {self.line_number}: {when}{self.level} {self.logger} - {self.message}{cause}"


# The one variable part an entry's message may hold: a process worker's name, as Prefect makes it.
WORKER_NAME = "{worker}"
_WORKER_NAME_PATTERN = r"ProcessWorker [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass(frozen=True)
class RoutineError:
    """An error that is expected in a server's log, matched exactly on the logger, message and exception; in the
    message, WORKER_NAME stands for the name of the worker it concerns."""

    logger: str
    message: str
    exception: str
    reason: str

    def matches(self, record: LogRecord) -> bool:
        if (record.logger, record.exception) != (self.logger, self.exception):
            return False
        pattern = re.escape(self.message).replace(re.escape(WORKER_NAME), _WORKER_NAME_PATTERN)
        return re.fullmatch(pattern, record.message) is not None


# Errors that are routine, each matched exactly and with the reason it is harmless. Prefect's own errors only:
# anything of ours, or any other message, fails the tests and shows in `make status`.
ROUTINE: tuple[RoutineError, ...] = (
    RoutineError(
        logger="prefect.server.utilities.worker_channel",
        message=f"Worker channel heartbeat persistence failed: work_pool=training worker_name={WORKER_NAME}",
        exception="sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked",
        reason="SQLite lets one writer in at a time, and Prefect 3.8 records a worker's channel heartbeat in a "
               "transaction that cannot wait for it (it reads first: SQLITE_BUSY_SNAPSHOT, no busy timeout). When "
               "flow runs write at that moment, the server closes the channel and the worker reconnects and "
               "heartbeats again at its next beat; no run is affected (tests/integration/test_schedules.py saw it "
               "with runs completing on either side, and the worker online throughout)."),
)


def parse_log(text: str) -> list[LogRecord]:
    """The records of a server's log text; lines before the first record (the banner) that hold a traceback
    become a record of their own (logger '-'), so that no traceback goes unseen."""
    records: list[LogRecord] = []
    header: dict | None = None
    details: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _RECORD.match(line) or _UVICORN_RECORD.match(line)
        if match is None and line.startswith(TRACEBACK) and header is None:
            header = {"line_number": number, "level": "ERROR", "logger": "-", "message": "(traceback)"}
        if match is None:
            if header is not None:
                details.append(line)
            continue
        if header is not None:
            records.append(LogRecord(**header, details=tuple(details)))
        header, details = _header(number, match.groupdict()), []
    if header is not None:
        records.append(LogRecord(**header, details=tuple(details)))
    return records


def _header(number: int, fields: dict) -> dict:
    time = None
    if fields.get("date"):
        time = datetime.strptime(f"{fields['date']} {fields['time']}", DATE_FORMAT)
    return {"line_number": number, "level": fields["level"], "logger": fields.get("logger") or "uvicorn",
            "message": fields["message"], "time": time}


def service_errors(text: str, expected: tuple[RoutineError, ...] = (), since: datetime | None = None,
                   ) -> list[LogRecord]:
    """The error records of a log (ERROR or CRITICAL, or holding a traceback) that neither `ROUTINE` nor
    `expected` allows; with `since`, only the dated records at or after it."""
    allowed = ROUTINE + tuple(expected)
    return [record for record in parse_log(text)
            if record.is_error and not any(entry.matches(record) for entry in allowed)
            and (since is None or (record.time is not None and record.time >= since))]


def read_service_errors(log_file: Path, expected: tuple[RoutineError, ...] = (),
                        since: datetime | None = None) -> list[LogRecord]:
    """`service_errors` of a log file; a missing file has none."""
    if not log_file.exists():
        return []
    return service_errors(log_file.read_text(errors="replace"), expected, since)
