"""Wall time per stage, for people: one terminal line per stage and a small local file per stage.

The files (`reports/<dataset>/timings/<stage>.json`) are git-ignored and are not DVC outputs: wall time
differs from run to run and must not make dvc.lock differ. The report page shows what it finds there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from tasks.common.fileio import write_json_atomic
from tasks.common.paths import DatasetPaths

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageTiming:
    stage: str
    dataset: str
    outcome: str  # "ok" or "failed (ErrorType)"
    seconds: float
    finished_at: str
    runner: str  # "cli" (python -m tasks.<stage>, as dvc repro runs it) or "prefect"


def stage_line(timing: StageTiming) -> str:
    """The one terminal line a stage ends with: `stage train@fashion-mnist: ok in 12.3 s`."""
    return f"stage {timing.stage}@{timing.dataset}: {timing.outcome} in {timing.seconds:.1f} s"


@contextlib.contextmanager
def timed_stage(paths: DatasetPaths, stage: str, runner: str, announce: Callable[[str], None]) -> Iterator[None]:
    """Time the block; on the way out (success or failure) record the timing and announce its line."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as error:
        outcome = f"failed ({type(error).__name__})"
        raise
    finally:
        timing = StageTiming(stage, paths.dataset, outcome, round(time.perf_counter() - started, 3),
                             datetime.now(timezone.utc).isoformat(timespec="seconds"), runner)
        _record(paths, timing)
        announce(stage_line(timing))


def _record(paths: DatasetPaths, timing: StageTiming) -> None:
    # A timing is a convenience: failing to write it must not hide the stage's own outcome.
    try:
        write_json_atomic(paths.stage_timing_file(timing.stage), asdict(timing))
    except OSError as error:
        logger.warning("could not record the wall time of %s: %s", timing.stage, error)


def read_timings(paths: DatasetPaths, stages: Iterable[str]) -> dict[str, StageTiming | None]:
    """The last recorded timing of each stage (None where none was recorded or the file is unreadable)."""
    found: dict[str, StageTiming | None] = {}
    for stage in stages:
        path = paths.stage_timing_file(stage)
        try:
            found[stage] = StageTiming(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            found[stage] = None
        except (ValueError, TypeError) as error:
            logger.warning("%s: unreadable stage timing (%s); ignored", path, error)
            found[stage] = None
    return found
