"""The files waiting in a dataset's inbox: which are ready to take, which a copy may still be writing, and their
removal once taken (tasks/ingest.py)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tasks.common.paths import INBOX_PLACEHOLDER

# Names that copy tools give a file while writing it (rsync's .name.XXXXXX, browsers' .part, editors' .tmp).
_TEMPORARY_SUFFIXES = (".part", ".tmp")


def ready_files(inbox: Path, settle_seconds: float) -> tuple[list[Path], list[Path]]:
    """(files to take now, files left for the next run). A file may still be being written while its name starts
    with '.' or ends in .part or .tmp (left: its final name, when the copy renames it, changes the inbox and so
    makes DVC run ingest again), or while it changed within `settle_seconds`: then this waits until it has been
    still that long, once, and leaves the files that changed meanwhile (their next change shows up the same way)."""
    ready, waiting, unsettled = _sort_files(inbox, settle_seconds)
    if unsettled:
        # At most settle_seconds, and never negative: a file dated in the future (an archive from another time
        # zone) must not hold the pipeline for hours; it is simply left for a later run.
        time.sleep(min(settle_seconds, max(0.0, settle_seconds - min(_age(path) for path in unsettled))))
        settled_now, _, still_changing = _sort_files(inbox, settle_seconds, unsettled)
        ready, waiting = sorted(ready + settled_now), sorted(waiting + still_changing)
    return ready, waiting


def _sort_files(inbox: Path, settle_seconds: float, among: list[Path] | None = None):
    """(settled, temporary names, changed within settle_seconds) among the inbox's files (or `among`)."""
    settled: list[Path] = []
    temporary: list[Path] = []
    unsettled: list[Path] = []
    now = time.time()
    for path, status in (_walk(inbox) if among is None else _still_there(among)):
        relative = str(path)[len(str(inbox)) + 1:]
        if relative == INBOX_PLACEHOLDER:
            continue
        if is_temporary(relative):
            temporary.append(path)
        else:
            changed = max(status.st_mtime, status.st_ctime)
            (unsettled if now - changed < settle_seconds else settled).append(path)
    return sorted(settled), sorted(temporary), sorted(unsettled)


def is_temporary(relative: str) -> bool:
    """A name ingest leaves alone, as one still being written or hidden: `.*` (a folder too), `*.part`, `*.tmp`."""
    return relative.startswith(".") or "/." in relative or relative.lower().endswith(_TEMPORARY_SUFFIXES)


def _still_there(paths: list[Path]):
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # gone since the first look: nothing to take
            yield path, path.stat()


def identity(status: os.stat_result) -> tuple[int, int, int]:
    """What tells a file from a replacement written under its name since it was read."""
    return status.st_ino, status.st_size, status.st_mtime_ns


def _walk(folder: Path):
    """(path, stat) of every file under `folder`; os.scandir hands over each stat without a second call."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path), entry.stat(follow_symlinks=False)


def _age(path: Path) -> float:
    """Seconds since the file last changed. The ctime too: a copy that keeps the source's mtime (cp -p, rsync)
    still sets the ctime when it writes or renames the file."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return float("inf")  # gone: nothing to wait for
    return time.time() - max(status.st_mtime, status.st_ctime)


def remove_from_inbox(inbox: Path, files: dict[Path, tuple[int, int, int]]) -> list[Path]:
    """Delete each file that is still the one that was read (its `identity`), then the folders under the inbox
    left empty (deepest first). A file replaced meanwhile (a second drop under the same name) is kept for the next
    run; returns those."""
    folders, replaced = set(), []
    for path, read in files.items():
        try:
            if identity(path.stat()) != read:
                replaced.append(path)
                continue
            os.unlink(path)
        except FileNotFoundError:
            pass
        folder = path.parent
        while folder != inbox and folder not in folders:
            folders.add(folder)
            folder = folder.parent
    for folder in sorted(folders, key=lambda folder: len(folder.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: another file is still arriving there
            folder.rmdir()
    return replaced
