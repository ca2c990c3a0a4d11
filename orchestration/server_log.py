"""Read a Prefect server's log: its records, and the errors its services logged.

The server's services (scheduler, late runs, foreman, triggers...) run in the background and report a failure only
in this log: a scheduler that fails on every pass still answers /health. `make status` and the tests read the log
with `service_errors`, which drops the few errors of Prefect's that are routine on SQLite (`ROUTINE`, each with its
reason). On PostgreSQL, the production database, every error counts but one (`ROUTINE_ON_ANY_DATABASE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
# Logged at WARNING when a message of the server's own queues (events for the triggers, the recorders...) failed
# every retry and is set aside: an event the automations never saw. An error here, whatever its level.
LOST_MESSAGE = re.compile(r"Message failed after \d+ retries and will be moved to the dead letter queue"
                          r"|Subscription queue is full, dropping message")
# Logged at WARNING when an automation's action failed: a notification that was not sent, say. An error here,
# except the heartbeat automation refused on a run already ended (HEARTBEAT_ACTION_ON_FINISHED_RUN).
ACTION_FAILED = re.compile(r"Action failed: ")


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
        return (self.level in ERROR_LEVELS or LOST_MESSAGE.match(self.message) is not None
                or ACTION_FAILED.match(self.message) is not None
                or any(_unframed(line).endswith(TRACEBACK) for line in self.details))

    @property
    def exception(self) -> str:
        """The line naming the exception the traceback ends with ("sqlalchemy.exc.OperationalError: ..."), or ''
        without a traceback: the first unindented line after the last frame (SQLAlchemy adds lines after it).
        Exception groups' "|" margins are looked through."""
        lines = [_unframed(line) for line in self.details]
        frames = [number for number, line in enumerate(lines) if line.startswith("  File ") or line.endswith(TRACEBACK)]
        if not frames:
            return ""
        return next((line for line in lines[frames[-1] + 1:] if line.strip() and not line.startswith((" ", "-"))), "")

    def summary(self) -> str:
        when = f"{self.time.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC " if self.time else ""
        cause = f": {self.exception}" if self.exception else ""
        return f"line {self.line_number}: {when}{self.level} {self.logger} - {self.message}{cause}"


# The variable parts an entry's message may hold, and exactly what each stands for.
WORKER_NAME, WORK_POOL_NAME, POOL_ID, DURATION, COUNT = "{worker}", "{work_pool}", "{pool_id}", "{duration}", "{count}"
UUID, DOCKET_TASK, FINAL_STATE = "{uuid}", "{docket_task}", "{final_state}"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PLACEHOLDERS = {WORKER_NAME: rf"ProcessWorker {_UUID}", WORK_POOL_NAME: r"[\w-]+", POOL_ID: _UUID, UUID: _UUID,
                 DURATION: r"\[ *\d+(ms|s )\]", COUNT: r"\d+",
                 # docket's call repr: "mark_deployments_ready(work_queue_ids=...){its key}"
                 DOCKET_TASK: r"\w+\(.*\)\{[\w:.-]*\}", FINAL_STATE: r"(?:COMPLETED|FAILED|CANCELLED|CRASHED)"}
SQLITE_LOCKED = "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked"
# Prefect's own setting for the server's database; unset, the server uses SQLite in PREFECT_HOME.
DATABASE_URL_VARIABLE = "PREFECT_SERVER_DATABASE_CONNECTION_URL"


def database_kind(environment) -> str:
    """'postgresql' when the server's database setting names PostgreSQL, else 'sqlite' (Prefect's embedded default)."""
    return "postgresql" if environment.get(DATABASE_URL_VARIABLE, "").startswith("postgresql") else "sqlite"


@dataclass(frozen=True)
class RoutineError:
    """An error that is expected in a server's log, matched exactly on the logger, message and exception; in the
    message, WORKER_NAME, WORK_POOL_NAME and POOL_ID stand for the worker, pool and pool id it concerns,
    DURATION for docket's "[ 123ms]", COUNT for a number, UUID for an id and DOCKET_TASK for the task docket
    names. With `detail`, a regular expression, one line of the record's details must also match it from its
    start (the SQL parameters of a failed write, say)."""

    logger: str
    message: str
    exception: str
    reason: str
    detail: str = ""

    def matches(self, record: LogRecord) -> bool:
        if (record.logger, record.exception) != (self.logger, self.exception):
            return False
        if self.detail and not any(re.match(self.detail, line) for line in record.details):
            return False
        pattern = re.escape(self.message)
        for placeholder, meaning in _PLACEHOLDERS.items():
            pattern = pattern.replace(re.escape(placeholder), meaning)
        return re.fullmatch(pattern, record.message) is not None


# Known after a server restart, not routine (see its reason): a test that restarts a server expects it.
RESENT_EVENTS_DROPPED = RoutineError(
    logger="prefect.server.events.services.event_persister",
    message=f"Max flush retries (5) reached, dropping {COUNT} events",
    exception="sqlalchemy.exc.IntegrityError: (sqlite3.IntegrityError) NOT NULL constraint failed: events.occurred",
    detail=r"\[SQL: INSERT INTO events \(related_resource_ids, related, id, created, updated\) VALUES ",
    reason="After a server restart, clients send again the events the killed server had not confirmed. On "
           "SQLite, Prefect 3.8.8 inserts only the events of a batch it does not hold yet; when a part of the "
           "batch (about 15 events) holds only copies, it inserts an empty row instead (no event, no time: the SQL "
           "above), which fails the whole flush. Checked: writing one stored event again gives exactly this "
           "error. After 5 tries the batch is dropped from the stored event history, new events in it too; the "
           "triggers and automations saw each event as it arrived. Not routine: expected only by the test that "
           "restarts a server during runs (tests/reliability/test_crashed_runs.py), and `make status` reports it.")


HEARTBEAT_ACTION_ON_FINISHED_RUN = RoutineError(
    logger="prefect.server.events.actions",
    message=f"Action failed: 'Failed to set state: Run is already in terminal state {FINAL_STATE}.'",
    exception="",
    reason="The heartbeat automation (automations.yaml, the only automation of ours that sets a state) tried to crash "
           "a run that had already ended, and Prefect refused: a final state is never changed, so the run keeps its "
           "state and no notification is sent. Its trigger (Prefect's documented zombie-run automation) opens a new "
           "90-s window for every heartbeat it handles, and Prefect 3.8's triggers service handles events two at a "
           "time, not strictly in order (server/utilities/messaging/memory.py, Consumer concurrency 2; "
           "events/triggers.py reactive_evaluation): a heartbeat handled with or after the run's final state event "
           "opens a window that nothing closes (Prefect issue #18653). A deployment run sends its queued heartbeats "
           "before it ends (orchestration/service.py, deliver_queued_events), which made it rare, not impossible: seen"
           " in a server killed under a run, then 4 times in one CI run of tests/integration/test_schedules.py on "
           "PostgreSQL, on a machine running three served test modules at once. Routine on both databases: the refused"
           " action is the whole effect, and every served test asserts its runs' final states and notifications; any "
           "other failed action (a notification not sent) stays an error. `make status` counts these refusals on a "
           "line of their own, so that a flood of them (the automation acting on every run, as issue 27 item 7 first "
           "saw) shows.")

# Prefect's errors that are routine whatever the database, each with the reason it is harmless.
ROUTINE_ON_ANY_DATABASE: tuple[RoutineError, ...] = (HEARTBEAT_ACTION_ON_FINISHED_RUN,)


# Errors that are routine on SQLite only, each matched exactly and with the reason it is harmless. Prefect's own
# errors only: anything of ours, or any other message, fails the tests and shows in `make status`. Each comes from
# SQLite's single writer; on PostgreSQL none of them is allowed (`service_errors`, database="postgresql").
ROUTINE: tuple[RoutineError, ...] = (
    RoutineError(
        logger="prefect.server.utilities.worker_channel",
        message=f"Worker channel heartbeat persistence failed: work_pool={WORK_POOL_NAME} worker_name={WORKER_NAME}",
        exception=SQLITE_LOCKED,
        reason="SQLite lets one writer in at a time, and Prefect 3.8 records a worker's channel heartbeat in a "
               "transaction that cannot wait for it (it reads first: SQLITE_BUSY_SNAPSHOT, no busy timeout). When "
               "flow runs write at that moment this one beat is lost; the next ones go through. Seen once in each "
               "of two passing runs of the 20-run load test (tests/reliability/test_prefect_faults.py), where all "
               "20 runs completed, and in a schedule test with runs completing before and after it."),
    RoutineError(
        logger="prefect.server",
        message="Encountered error during state validation",
        exception=SQLITE_LOCKED,
        detail=(r"\[parameters: \{'flow_run_id': '[0-9a-f-]{36}', 'type': 'SCHEDULED', 'timestamp': '[^']*', "
                r"'name': 'Late', "),
        reason="Prefect 3.8's late-runs service marks each overdue Scheduled run Late in a task of its own, up to "
               "10 at once, each in a transaction that reads first and so cannot wait for SQLite's write lock "
               "(SQLITE_BUSY_SNAPSHOT). With many runs waiting in a queue at its limit, most marks lose the race; "
               "the runs stay Scheduled and the next pass (every 5 s) marks them. Matched only on the Late state's "
               "own insert. Seen 81 times in a passing run of the 20-run load test, where all "
               "20 runs completed one at a time."),
    RoutineError(
        logger="docket.dependencies",
        message=f"\u21a9 {DURATION} {DOCKET_TASK}",
        exception=SQLITE_LOCKED,
        reason="Prefect 3.8 runs its background services (the foreman, late runs, marking queues and deployments "
               "READY after a poll...) as docket tasks. docket logs a failed task under this logger only when it "
               "has scheduled it again: a Retry with attempts left, or a Perpetual service's next pass (docket's "
               "dependencies/_retry.py and _perpetual.py); a task that fails for good is logged by docket.worker, "
               "which stays an error. Twice during the 20-run load test (in CI, and once before on a machine busy "
               "with other test suites), SQLite's write lock was held for about 60 s (the holder is not known) "
               "and the tasks that waited for it out-waited the busy timeout "
               "(mark_work_queues_ready, mark_deployments_ready, monitor_worker_health); they ran again and all 20 "
               "runs completed one at a time."),
    RoutineError(
        logger="prefect.server.models.deployments",
        message="Error marking deployments as not ready: (sqlite3.OperationalError) database is locked",
        exception=SQLITE_LOCKED,
        reason="The foreman's pass marks NOT_READY the deployments no worker polled for 60 s, and logs a failed "
               "write instead of raising it; its next pass (every 15 s) marks them again, and the worker's next "
               "poll marks them READY. Seen with the 60 s lock hold above, in a passing load test."),
    RoutineError(
        logger="prefect.server.events.triggers",
        message="Error running periodic evaluation",
        exception=SQLITE_LOCKED,
        reason="Every 5 s the triggers service reloads changed automations and closes expired buckets; a pass that "
               "fails is logged and the loop runs the next one 5 s later (events/triggers.py, "
               "evaluate_periodically). Seen with the 60 s lock hold above, in a passing load test."),
    RoutineError(
        logger="prefect.server.events.triggers",
        message=f"Error evaluating automation {UUID} trigger {UUID} proactively",
        exception=SQLITE_LOCKED,
        reason="A proactive trigger (the heartbeat automation of automations.yaml) that fails its evaluation keeps "
               "its time of next evaluation, so the next pass, 5 s later, evaluates it again (events/triggers.py, "
               "evaluate_proactive_triggers). Not seen yet: the same 60 s lock hold would cause it."),
    RoutineError(
        logger="prefect.server.utilities.messaging.memory",
        message="Failed in consume_loop",
        exception=SQLITE_LOCKED,
        reason="The server's in-memory queues hand each event to a consumer (the triggers that automations use, the "
               "recorders); on SQLite a consumer's write can lose the race for the write lock (a transaction that "
               "read first cannot wait: SQLITE_BUSY_SNAPSHOT). Prefect logs it and puts the message back for "
               "another try, up to 3; a message that fails them all is set aside with a warning, which counts as "
               "an error here (LOST_MESSAGE). Seen twice in a passing run of tests/reliability/test_crashed_runs.py "
               "(the heartbeat automation's bucket insert), where every notification and state change arrived. "
               "Not harmless in every case: on a loaded machine a retried trigger fired its action again, and one "
               "failed run sent 3 notifications (tests/integration/test_notifications.py, which then fails)."),
)


def parse_log(text: str) -> list[LogRecord]:
    """The records of a server's log text. A traceback outside any record (before the first one) becomes a record
    of its own (logger '-'), so that none goes unseen; a record without a date of its own (uvicorn's, that one)
    takes the date of the dated record before it, so that `since` keeps it."""
    records: list[LogRecord] = []
    header: dict | None = None
    details: list[str] = []
    last_time: datetime | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _RECORD.match(line) or _UVICORN_RECORD.match(line)
        if match is None and line.startswith(TRACEBACK) and header is None:
            header = {"line_number": number, "level": "ERROR", "logger": "-", "message": "(traceback)",
                      "time": last_time}
        if match is None:
            if header is not None:
                details.append(line)
            continue
        if header is not None:
            records.append(LogRecord(**header, details=tuple(details)))
        header, details = _header(number, match.groupdict(), last_time), []
        last_time = header["time"]
    if header is not None:
        records.append(LogRecord(**header, details=tuple(details)))
    return records


def _header(number: int, fields: dict, last_time: datetime | None) -> dict:
    time = last_time
    if fields.get("date"):  # the server's local time, as logging writes it
        time = datetime.strptime(f"{fields['date']} {fields['time']}", DATE_FORMAT).astimezone()
    return {"line_number": number, "level": fields["level"], "logger": fields.get("logger") or "uvicorn",
            "message": fields["message"], "time": time}


def _unframed(line: str) -> str:
    """`line` without the "|" or "+" margin Python draws around an exception group's members."""
    return re.sub(r"^\s*[|+] ?", "", line) if re.match(r"^\s*[|+]", line) else line


def service_errors(text: str, expected: tuple[RoutineError, ...] = (), since: datetime | None = None,
                   database: str = "sqlite") -> list[LogRecord]:
    """The error records of a log (ERROR or CRITICAL, or holding a traceback) that neither `ROUTINE` (on SQLite
    only), `ROUTINE_ON_ANY_DATABASE` nor `expected` allows; with `since` (timezone-aware), only the dated records at
    or after it."""
    allowed = (ROUTINE if database == "sqlite" else ()) + ROUTINE_ON_ANY_DATABASE + tuple(expected)
    return [record for record in parse_log(text)
            if record.is_error and not any(entry.matches(record) for entry in allowed)
            and (since is None or (record.time is not None and record.time >= since))]


def read_service_errors(log_file: Path, expected: tuple[RoutineError, ...] = (),
                        since: datetime | None = None, database: str = "sqlite") -> list[LogRecord]:
    """`service_errors` of a log file; a missing file has none."""
    if not log_file.exists():
        return []
    return service_errors(log_file.read_text(errors="replace"), expected, since, database)


def read_routine_records(log_file: Path, entry: RoutineError, since: datetime | None = None) -> list[LogRecord]:
    """The records of a log file that `entry` matches, dated at or after `since` when given."""
    if not log_file.exists():
        return []
    return [record for record in parse_log(log_file.read_text(errors="replace"))
            if entry.matches(record) and (since is None or (record.time is not None and record.time >= since))]

