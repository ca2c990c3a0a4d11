"""tasks/common/lock.py: the per-dataset pipeline lock, against a second real process.

While one process holds the lock another is refused at once with a message naming the holder, and the refusal
leaves the holder's record alone; the lock is released when the block ends, fails, or its holder is killed with
SIGKILL (the next run takes over and says so); it is not re-entrant, and an inner refusal never releases the outer
hold. tests/reliability/test_dvc_faults.py checks the same lock through `dvc repro` and a stage command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tasks.common.errors import PipelineLockedError
from tasks.common.lock import pipeline_lock
from tests.conftest import PROJECT_ROOT

# argv: lock file, holder. Takes the lock, says so, and waits to be killed.
HOLD = """
import sys, time
from tasks.common.lock import pipeline_lock
with pipeline_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""
# argv: lock file. Takes the flock itself and writes no record, as a holder killed before writing it would.
HOLD_WITHOUT_RECORD = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(60)
"""
# argv: lock file. Exit 0 if the lock could be taken, 3 (and the message on stdout) if it was refused.
TRY = """
import sys
from tasks.common.errors import PipelineLockedError
from tasks.common.lock import pipeline_lock
try:
    with pipeline_lock(sys.argv[1], "other process"):
        pass
except PipelineLockedError as error:
    print(error)
    sys.exit(3)
"""
CHILD_ENVIRONMENT = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


@contextlib.contextmanager
def holder_process(script: str, *arguments: str):
    """A second process that holds the lock until the block ends; killed and waited for by PID in any case."""
    child = subprocess.Popen([sys.executable, "-c", script, *arguments], cwd=PROJECT_ROOT, env=CHILD_ENVIRONMENT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = child.stdout.readline().strip()
        if ready != "held":
            child.kill()
            pytest.fail(f"the holder did not take the lock: {ready!r} {child.communicate(timeout=10)[1]}")
        yield child
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()


def try_from_another_process(lock_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY, str(lock_file)], cwd=PROJECT_ROOT, env=CHILD_ENVIRONMENT,
                          capture_output=True, text=True, timeout=30)


def record_in(lock_file: Path) -> dict:
    return json.loads(lock_file.read_text(encoding="utf-8"))


@pytest.fixture
def lock_file(tmp_path) -> Path:
    return tmp_path / ".dvc" / "tmp" / "pipeline-custom.lock"


def test_another_process_holding_the_lock_refuses_at_once_naming_the_holder(lock_file):
    with holder_process(HOLD, str(lock_file), "flow training-pipeline") as holder:
        held = lock_file.read_bytes()
        record = json.loads(held)
        started = time.monotonic()

        with pytest.raises(PipelineLockedError) as raised:
            with pipeline_lock(lock_file, "stage normalize"):
                pytest.fail("the block ran while another process held the lock")

        assert time.monotonic() - started < 1  # refused at once, not after waiting
        assert str(raised.value) == (
            f"{lock_file}: another run holds the lock (flow training-pipeline, pid {holder.pid}, "
            f"since {record['since']}: {record['command']}); wait for it to finish, then run again")
        assert lock_file.read_bytes() == held  # the refused run leaves the holder's record alone
        assert holder.poll() is None


def test_a_holder_killed_with_sigkill_releases_the_lock_and_the_next_run_takes_over(lock_file, caplog):
    with holder_process(HOLD, str(lock_file), "flow training-pipeline") as holder:
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
    assert record_in(lock_file)["pid"] == holder.pid  # the killed run's record is still there

    with caplog.at_level(logging.WARNING, logger="tasks.common.lock"):
        with pipeline_lock(lock_file, "stage train"):
            record = record_in(lock_file)

    assert (record["pid"], record["holder"]) == (os.getpid(), "stage train")
    (warning,) = [entry for entry in caplog.records if entry.name == "tasks.common.lock"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(
        f"{lock_file}: the run that held this lock was killed (flow training-pipeline, pid {holder.pid}, since ")
    assert lock_file.read_bytes() == b""


def test_while_held_the_file_names_this_process_and_another_process_is_refused(lock_file):
    with pipeline_lock(lock_file, "stage train"):
        record = record_in(lock_file)
        refused = try_from_another_process(lock_file)

    assert (record["pid"], record["holder"], record["command"]) == (os.getpid(), "stage train", " ".join(sys.argv))
    since = datetime.fromisoformat(record["since"])
    assert since.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - since) < timedelta(minutes=1)
    assert refused.returncode == 3, refused.stderr
    assert refused.stdout.startswith(f"{lock_file}: another run holds the lock (stage train, pid {os.getpid()}, ")


def test_a_run_that_ends_normally_empties_the_file_so_the_next_one_does_not_warn(lock_file, caplog):
    with pipeline_lock(lock_file, "stage validate"):
        pass

    assert lock_file.read_bytes() == b""
    assert try_from_another_process(lock_file).returncode == 0
    with caplog.at_level(logging.WARNING, logger="tasks.common.lock"):
        with pipeline_lock(lock_file, "stage normalize"):
            pass
    assert [entry for entry in caplog.records if entry.name == "tasks.common.lock"] == []


def test_a_failing_block_releases_the_lock_and_its_exception_goes_through(lock_file):
    failure = ValueError("the stage broke")

    with pytest.raises(ValueError) as raised:
        with pipeline_lock(lock_file, "stage evaluate"):
            raise failure

    assert raised.value is failure
    assert lock_file.read_bytes() == b""
    taken = try_from_another_process(lock_file)
    assert taken.returncode == 0, taken.stdout + taken.stderr


def test_the_lock_is_not_reentrant_and_an_inner_refusal_keeps_the_outer_hold(lock_file):
    """A flock belongs to the open file: a second `with` in the same process is refused like another process,
    and closing the refused descriptor must not release the lock the outer block still holds."""
    with pipeline_lock(lock_file, "flow training-pipeline"):
        with pytest.raises(PipelineLockedError, match=rf"\(flow training-pipeline, pid {os.getpid()}, "):
            with pipeline_lock(lock_file, "stage train"):
                pytest.fail("re-entered a held lock")
        assert record_in(lock_file)["holder"] == "flow training-pipeline"
        still_held = try_from_another_process(lock_file)

    assert still_held.returncode == 3, still_held.stderr
    assert try_from_another_process(lock_file).returncode == 0


def test_a_holder_that_wrote_no_record_is_named_as_unknown(lock_file):
    lock_file.parent.mkdir(parents=True)

    with holder_process(HOLD_WITHOUT_RECORD, str(lock_file)):
        with pytest.raises(PipelineLockedError) as raised:
            with pipeline_lock(lock_file, "stage train"):
                pass

    assert str(raised.value) == (f"{lock_file}: another run holds the lock (holder unknown); "
                                 "wait for it to finish, then run again")


@pytest.mark.parametrize("leftover", [b"not json {", b'["a", "list"]'], ids=["garbage", "not-a-mapping"])
def test_an_unreadable_leftover_record_is_replaced_without_a_warning(lock_file, caplog, leftover):
    lock_file.parent.mkdir(parents=True)
    lock_file.write_bytes(leftover)

    with caplog.at_level(logging.WARNING, logger="tasks.common.lock"):
        with pipeline_lock(lock_file, "stage train"):
            record = record_in(lock_file)

    assert record["pid"] == os.getpid()
    assert [entry for entry in caplog.records if entry.name == "tasks.common.lock"] == []


def test_a_long_record_left_by_a_killed_run_is_replaced_whole(lock_file, caplog):
    lock_file.parent.mkdir(parents=True)
    killed = {"pid": 999999, "holder": "flow training-pipeline", "command": "prefect " + "x" * 5000,
              "since": "2024-01-01T00:00:00+00:00"}
    lock_file.write_text(json.dumps(killed))

    with caplog.at_level(logging.WARNING, logger="tasks.common.lock"):
        with pipeline_lock(lock_file, "stage train"):
            record = record_in(lock_file)  # one JSON document: nothing of the longer record is left after it

    assert (record["pid"], record["holder"]) == (os.getpid(), "stage train")
    assert "(flow training-pipeline, pid 999999, since 2024-01-01T00:00:00+00:00: prefect xxx" in caplog.text


def test_locks_of_different_datasets_do_not_block_each_other(tmp_path):
    custom, sample = tmp_path / "pipeline-custom.lock", tmp_path / "pipeline-mnist-sample.lock"

    with holder_process(HOLD, str(custom), "flow training-pipeline"):
        with pipeline_lock(sample, "stage train"):
            assert record_in(sample)["pid"] == os.getpid()
        assert try_from_another_process(custom).returncode == 3


def test_the_lock_folder_is_created_when_missing(tmp_path):
    lock_file = tmp_path / "fresh" / ".dvc" / "tmp" / "pipeline-custom.lock"

    with pipeline_lock(lock_file, "stage download"):
        assert record_in(lock_file)["holder"] == "stage download"

    assert lock_file.exists() and lock_file.read_bytes() == b""


def test_a_waiting_run_takes_the_lock_once_the_holder_ends_and_a_bounded_wait_gives_up(lock_file, caplog):
    caplog.set_level(logging.INFO, logger="tasks.common.lock")
    with holder_process(HOLD, str(lock_file), "stage train") as holder:
        with pytest.raises(PipelineLockedError, match=r"another run holds the lock \(stage train, .*\) after "
                                                       r"waiting 1 s; wait for it to finish"):
            with pipeline_lock(lock_file, "flow training-pipeline", wait_seconds=1):
                pytest.fail("the block ran while another process held the lock")
        ended = time.monotonic() + 1.5
        killer = subprocess.Popen([sys.executable, "-c", f"import os, signal, time; time.sleep(1.5); "
                                           f"os.kill({holder.pid}, signal.SIGTERM)"])
        started = time.monotonic()
        with pipeline_lock(lock_file, "flow training-pipeline", wait_seconds=30):
            waited = time.monotonic() - started
            assert record_in(lock_file)["holder"] == "flow training-pipeline"
        killer.wait(timeout=10)

    assert time.monotonic() >= ended and 1.0 <= waited < 10
    assert sum("waiting for it, up to 30 s" in message for message in caplog.messages) == 1
