"""The run log beside each report page: `reports/<dataset>/run_log.js`, local state, not versioned.

The report page is a DVC output and holds only what its inputs decide (tasks/lib/report_html.py), so that a fresh
clone's `make run` leaves dvc.lock as committed. What differs from run to run lives here instead: when this
checkout's last run wrote it, at which commit, each stage's wall time (reports/<dataset>/timings/) and the
dataset's history from the commits runs made (tasks/lib/run_history.py), with the test accuracy over time. The
page loads it with a script tag, which browsers run from a local file, offline.

Written by the report stage, again after a run commits its version (versioning/commits.py) so that the history
includes it, and by `make history`.
"""

from __future__ import annotations

import logging
import subprocess
from datetime import datetime, timezone

from tasks.common.fileio import write_text_atomic
from tasks.common.paths import STAGES, DatasetPaths
from tasks.common.timings import read_timings
from tasks.lib.report_html import RunLog, render_run_log
from tasks.lib.run_history import read_history

logger = logging.getLogger(__name__)


def write_run_log(paths: DatasetPaths) -> None:
    """Write the dataset's run log; a failure to is logged, never raised (the log is a convenience)."""
    try:
        log = RunLog(paths.dataset, datetime.now(timezone.utc).isoformat(timespec="seconds"), git_commit(paths),
                     read_timings(paths, [stage for stage in STAGES if stage != "report"]),
                     read_history(paths.root, paths.dataset))
        write_text_atomic(paths.run_log_file, render_run_log(log))
    except (OSError, ValueError) as error:
        logger.warning("could not write the run log %s: %s", paths.run_log_file, error)


def git_commit(paths: DatasetPaths) -> str:
    """HEAD, with a note when the dataset's versioned files differ from it (a run not yet committed)."""
    def git(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *arguments], cwd=paths.root, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        changed = git("status", "--porcelain", "--", "dvc.lock").stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown (git: {error})"
    return head.stdout.strip() + (" (with dvc.lock changed since: this run is not committed)" if changed else "")
