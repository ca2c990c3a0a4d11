"""Reading a Prefect server's log: the errors its services logged, what is allowed, and since when."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from orchestration.server_log import (RESENT_EVENTS_DROPPED, ROUTINE, SQLITE_LOCKED,
                                      RoutineError, parse_log, read_service_errors, service_errors)

# The first 80 seconds of `make serve` with sqlalchemy 2.1.9 in the lock (issue 12): two scheduler passes.
SQLALCHEMY_21_LOG = Path(__file__).parent / "data" / "server-sqlalchemy-2.1.9.log"
BULK_DML = ("sqlalchemy.exc.InvalidRequestError: Can't evaluate bulk DML statement; please supply a bulk_dml "
            "decorated function")
# A schedule test's server (issue 12): twice, a worker's channel heartbeat lost the race for SQLite's write lock.
HEARTBEAT_LOCKED_LOG = Path(__file__).parent / "data" / "server-heartbeat-database-locked.log"
# The 20-run load test's server (issue 12's CI failure): marking waiting runs Late lost the race for the write lock.
LATE_LOCKED_LOG = Path(__file__).parent / "data" / "server-late-runs-database-locked.log"
# A restarted server (issue 17, the server killed during a run): a flush of events it already held, dropped.
EVENTS_RESENT_LOG = Path(__file__).parent / "data" / "server-events-resent-after-restart.log"
# The crashed-runs test's server (issue 17): a trigger's bucket write lost the race for the write lock, retried.
TRIGGER_LOCKED_LOG = Path(__file__).parent / "data" / "server-trigger-bucket-database-locked.log"
CLEAN = """
 ___ ___ ___ ___ ___ ___ _____
Configure Prefect to communicate with the server with:
2026-12-02 01:00:00.100 | INFO    | prefect.server - started
2026-12-02 01:00:05.200 | WARNING | prefect.server.services.late_runs - slow pass
"""


def test_the_scheduler_failures_of_the_sqlalchemy_21_server_are_found():
    errors = read_service_errors(SQLALCHEMY_21_LOG)

    assert [(error.logger, error.exception) for error in errors] == [("docket.dependencies", BULK_DML)] * 2
    assert "schedule_recent_deployments()" in errors[0].message and "schedule_deployments()" in errors[1].message
    assert errors[0].summary().startswith("line 17: ERROR docket.dependencies - ")


def test_a_clean_log_has_no_errors_and_warnings_are_not_errors():
    assert [record.level for record in parse_log(CLEAN)] == ["INFO", "WARNING"]
    assert service_errors(CLEAN) == []


def test_a_traceback_outside_any_record_and_uvicorn_errors_are_errors():
    text = ("banner\nTraceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'x'\n"
            "ERROR:    Exception in ASGI application\n")

    errors = service_errors(text)

    assert [(error.logger, error.exception) for error in errors] == [("-", "KeyError: 'x'"), ("uvicorn", "")]
    assert errors[1].message == "Exception in ASGI application"


def test_an_info_record_with_a_traceback_is_an_error():
    text = "01:00:00.000 | INFO    | prefect.server.x - note\nTraceback (most recent call last):\nOSError: gone\n"

    assert [error.exception for error in service_errors(text)] == ["OSError: gone"]


def test_an_expected_error_is_allowed_only_when_it_matches_exactly():
    (first, second) = read_service_errors(SQLALCHEMY_21_LOG)
    expected = RoutineError(first.logger, first.message, first.exception, reason="this test expects it")
    near_miss = RoutineError(first.logger, first.message, first.exception + ".", reason="one character more")

    assert read_service_errors(SQLALCHEMY_21_LOG, (expected,)) == [second]
    assert len(read_service_errors(SQLALCHEMY_21_LOG, (near_miss,))) == 2


def test_since_keeps_the_errors_at_or_after_it_and_undated_ones_take_the_date_before_them():
    text = ("2026-12-02 00:10:00.000 | ERROR   | docket.worker - old\n"
            "2026-12-02 01:00:00.000 | ERROR   | docket.worker - at the boundary\n"
            "2026-12-02 01:10:00.000 | INFO    | prefect.server - fine\n"
            "ERROR:    Exception in ASGI application\nTraceback (most recent call last):\nKeyError: 'x'\n")
    local = datetime(2026, 12, 2, 1, 0).astimezone()  # the log's times are the server's local time

    recent = service_errors(text, since=local)

    assert [(error.message, error.time) for error in recent] == [
        ("at the boundary", local), ("Exception in ASGI application", datetime(2026, 12, 2, 1, 10).astimezone())]


def test_an_exception_group_logged_at_info_is_an_error_naming_the_group():
    text = ("01:00:00.000 | INFO    | prefect.server.x - done\n"
            "  + Exception Group Traceback (most recent call last):\n"
            "  |   File \"x.py\", line 1, in <module>\n"
            "  |     raise ExceptionGroup(\"two failed\", [ValueError(\"a\"), KeyError(\"b\")])\n"
            "  | ExceptionGroup: two failed (2 sub-exceptions)\n"
            "  +-+---------------- 1 ----------------\n"
            "    | ValueError: a\n"
            "    +------------------------------------\n")

    assert [error.exception for error in service_errors(text)] == ["ExceptionGroup: two failed (2 sub-exceptions)"]


def test_a_missing_log_file_has_no_errors(tmp_path):
    assert read_service_errors(tmp_path / "server.log") == []


def test_the_routine_heartbeat_lock_error_is_allowed_and_only_for_a_process_worker_name():
    records = [record for record in parse_log(HEARTBEAT_LOCKED_LOG.read_text()) if record.is_error]
    other_worker = records[0].message.replace("ProcessWorker ", "DockerWorker ")
    renamed = [record.__class__(**{**record.__dict__, "message": other_worker}) for record in records]

    assert [record.exception for record in records] == [
        "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked"] * 2
    assert read_service_errors(HEARTBEAT_LOCKED_LOG) == []
    assert all(not entry.matches(record) for entry in ROUTINE for record in renamed)


def test_a_late_mark_that_lost_the_write_lock_is_allowed_but_no_other_state_write_is():
    text = LATE_LOCKED_LOG.read_text()
    records = [record for record in parse_log(text) if record.is_error]
    other_state = text.replace("'name': 'Late', ", "'name': 'Running', ")

    assert [record.message for record in records] == ["Encountered error during state validation"] * 2
    assert service_errors(text) == []
    assert [record.line_number for record in service_errors(other_state)] == [record.line_number for record in records]


# The record as docket's Retry handler writes it (dependencies/_retry.py): "↩ [duration] call" at ERROR, with the
# exception's traceback; the 20-run load test's server logged it once, after waiting 60 s for SQLite's write lock.
QUEUES_READY_LOCKED = """2026-12-02 04:31:50.123 | ERROR   | docket.dependencies - \u21a9 [ 60211ms] \
mark_work_queues_ready(polled_work_queue_ids=..., ready_work_queue_ids=...)\
{mark_work_queues_ready:work_pool:b9f3c2bc-4847-4ee9-99e1-9037904f9f07}
Traceback (most recent call last):
  File "/check/.venv/lib/python3.11/site-packages/docket/worker.py", line 1100, in _execute
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked
"""


def record_of(logger: str, message: str, exception: str = SQLITE_LOCKED) -> str:
    return (f"2026-12-03 12:36:29.100 | ERROR   | {logger} - {message}\nTraceback (most recent call last):\n"
            f'  File "/check/.venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py", line 1967, in _exec\n'
            f"{exception}\n")


# What the CI load test's server logged in the same second, after SQLite's write lock was held about 60 s (the four
# records of its log, messages as written).
SIXTY_SECONDS_LOCKED = "".join((
    record_of("docket.dependencies", "\u21a9 [ 60486ms] mark_deployments_ready(work_queue_ids=...)"
              "{mark_deployments_ready:work_pool:cd34e6da-dd1c-4aa1-bfba-9b5fded34a02}"),
    record_of("prefect.server.models.deployments",
              "Error marking deployments as not ready: (sqlite3.OperationalError) database is locked"),
    record_of("prefect.server.events.triggers", "Error running periodic evaluation"),
    record_of("docket.dependencies", "\u21a9 [   174ms] monitor_worker_health(){monitor_worker_health}"),
))


def test_a_retried_queue_ready_mark_that_lost_the_write_lock_is_allowed_and_nothing_like_it():
    assert service_errors(QUEUES_READY_LOCKED) == []
    assert service_errors(QUEUES_READY_LOCKED.replace("[ 60211ms]", "[   123s ]")) == []
    for changed in (QUEUES_READY_LOCKED.replace("database is locked", "disk I/O error"),
                    # docket.worker logs a task that failed for good (no retry left, no next pass): an error.
                    QUEUES_READY_LOCKED.replace("docket.dependencies", "docket.worker"),
                    QUEUES_READY_LOCKED.replace("[ 60211ms]", "[ soon ]")):
        assert len(service_errors(changed)) == 1


def test_background_passes_that_waited_out_a_held_write_lock_are_allowed_and_nothing_like_them():
    assert len([record for record in parse_log(SIXTY_SECONDS_LOCKED) if record.is_error]) == 4
    assert service_errors(SIXTY_SECONDS_LOCKED) == []
    proactive = record_of("prefect.server.events.triggers",
                          "Error evaluating automation 0c9a8f56-2a42-4a4e-9d0b-1f1d0f6a3c11 "
                          "trigger 7d2e1c3b-5f4a-4b6c-8d9e-0a1b2c3d4e5f proactively")
    assert service_errors(proactive) == []
    assert len(service_errors(SIXTY_SECONDS_LOCKED.replace("database is locked", "disk I/O error"))) == 4
    for changed in (SIXTY_SECONDS_LOCKED.replace("prefect.server.events.triggers", "prefect.server.events.actions"),
                    SIXTY_SECONDS_LOCKED.replace("not ready: (sqlite3", "ready: (sqlite3"),
                    SIXTY_SECONDS_LOCKED.replace("periodic evaluation", "periodic evaluation of actions")):
        assert len(service_errors(changed)) == 1
    assert len(service_errors(proactive.replace("trigger 7d2e1c3b", "trigger of mine 7d2e1c3b"))) == 1


def test_a_dropped_batch_of_resent_events_is_an_error_unless_a_restart_test_expects_it():
    text = EVENTS_RESENT_LOG.read_text()
    (record,) = [record for record in parse_log(text) if record.is_error]
    expected = (RESENT_EVENTS_DROPPED,)

    assert record.message == "Max flush retries (5) reached, dropping 24 events"
    assert len(service_errors(text)) == 1  # events were dropped from the history: `make status` says so
    assert service_errors(text, expected) == []
    assert service_errors(text.replace("dropping 24 events", "dropping 3 events"), expected) == []
    # Events that carry their time, a database that failed otherwise, another service: errors even then.
    for changed in (text.replace("(related_resource_ids, related, id, created, updated)",
                                 "(occurred, event, related_resource_ids, related, id, created, updated)"),
                    text.replace("NOT NULL constraint failed: events.occurred", "database is locked"),
                    text.replace("services.event_persister", "services.task_run_recorder")):
        assert len(service_errors(changed, expected)) == 1


def test_a_retried_queue_message_is_allowed_but_one_set_aside_is_an_error_though_logged_as_a_warning():
    text = TRIGGER_LOCKED_LOG.read_text()
    (record,) = [record for record in parse_log(text) if record.is_error]
    set_aside = ("2026-12-03 10:07:58.100 | WARNING | prefect.server.utilities.messaging.memory - Message failed "
                 "after 4 retries and will be moved to the dead letter queue\n")

    assert record.message == "Failed in consume_loop"
    assert service_errors(text) == []
    assert len(service_errors(text.replace("database is locked", "disk I/O error"))) == 1
    assert [record.message for record in service_errors(text + set_aside)] == [set_aside.split(" - ", 1)[1].strip()]
    queue_full = set_aside.replace("Message failed after 4 retries and will be moved to the dead letter queue",
                                   "Subscription queue is full, dropping message for topic='events' queue_size=10000")
    assert len(service_errors(text + queue_full)) == 1


def test_an_automation_action_that_failed_is_an_error_though_logged_as_a_warning():
    """Prefect logs a failed action at WARNING (issue 27 item 7: `make status` said nothing of one)."""
    not_sent = ("2026-12-03 10:09:30.412 | WARNING | prefect.server.events.actions - Action failed: "
                "'Notification failed: HTTP 500'\n")

    (error,) = service_errors(CLEAN + not_sent, database="postgresql")

    assert error.message == "Action failed: 'Notification failed: HTTP 500'"
    assert service_errors(CLEAN, database="postgresql") == []


def test_on_postgresql_none_of_sqlites_routine_errors_is():
    """Every entry of ROUTINE comes from SQLite's single writer: with the server on PostgreSQL each counts."""
    from orchestration.server_log import database_kind

    assert service_errors(SIXTY_SECONDS_LOCKED) == []
    assert len(service_errors(SIXTY_SECONDS_LOCKED, database="postgresql")) == 4
    assert database_kind({"PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u@127.0.0.1:5432/p"}) == \
        "postgresql"
    assert database_kind({}) == "sqlite"


def test_the_heartbeat_automation_refused_on_a_finished_run_is_routine_on_both_databases_and_no_other_failed_action():
    # As the PostgreSQL-backed server of tests/integration/test_schedules.py logged it in CI.
    line = ("2026-12-07 09:51:53.120 | WARNING | prefect.server.events.actions - Action failed: 'Failed to set "
            "state: Run is already in terminal state COMPLETED.'\n")

    for state in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
        assert service_errors(line.replace("COMPLETED", state), database="postgresql") == []
        assert service_errors(line.replace("COMPLETED", state)) == []
    assert len(service_errors(line.replace("COMPLETED", "SCHEDULED"), database="postgresql")) == 1  # not final
    not_sent = line.replace("'Failed to set state: Run is already in terminal state COMPLETED.'",
                            "'Notification failed: HTTP 500'")
    assert len(service_errors(not_sent, database="postgresql")) == 1
