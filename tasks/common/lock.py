"""One pipeline run per dataset at a time: an exclusive lock on `.dvc/tmp/pipeline-<dataset>.lock`.

The Prefect flow holds it for the whole run; each stage command (`python -m tasks.<stage>`, what `dvc repro`
runs) holds it for its stage. A second run fails at once with PipelineLockedError naming the holder, or, given
`wait_seconds` (a deployment's run, which must not fail because someone ran `dvc repro`), waits for it that long.
The lock is an `flock`, so the kernel releases it when its holder dies, `kill -9` included: a run killed
mid-way leaves the file behind but never a held lock, and the next run simply takes it (and logs that the
previous holder is gone). Local file systems only: `flock` is not reliable on NFS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from tasks.common.errors import PipelineLockedError

logger = logging.getLogger(__name__)
_POLL_SECONDS = 0.5


@contextlib.contextmanager
def pipeline_lock(lock_file: Path, holder: str, wait_seconds: float = 0) -> Iterator[None]:
    """Hold the lock while the block runs; raise PipelineLockedError if another process holds it for longer than
    `wait_seconds` (default: at once).

    `holder` says what is running (shown to a run that finds the lock taken).
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(descriptor, lock_file, wait_seconds)
        previous = _read(descriptor)
        if previous:  # a run that ends normally empties the file, so this one was killed
            logger.warning("%s: the run that held this lock was killed (%s); its lock was released with it, "
                           "taking over", lock_file, _describe(previous))
        _write(descriptor, {"pid": os.getpid(), "holder": holder, "command": " ".join(sys.argv),
                            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # closing the descriptor releases the flock


def _acquire(descriptor: int, lock_file: Path, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _describe(_read(descriptor))
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait_seconds:.0f} s" if wait_seconds else ""
                raise PipelineLockedError(f"{lock_file}: another run holds the lock ({holder}){waited}; "
                                          "wait for it to finish, then run again") from None
            if deadline - time.monotonic() > wait_seconds - _POLL_SECONDS:  # the first refusal only
                logger.info("%s: another run holds the lock (%s); waiting for it, up to %.0f s", lock_file,
                            holder, wait_seconds)
            time.sleep(_POLL_SECONDS)


def _read(descriptor: int) -> dict:
    os.lseek(descriptor, 0, os.SEEK_SET)
    text = os.read(descriptor, 65536).decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _write(descriptor: int, record: dict) -> None:
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    os.write(descriptor, json.dumps(record).encode("utf-8"))


def _describe(record: dict) -> str:
    if not record:
        return "holder unknown"
    return f"{record.get('holder')}, pid {record.get('pid')}, since {record.get('since')}: {record.get('command')}"
