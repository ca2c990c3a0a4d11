"""DVC as the source of truth for "what changed": status before a run, `dvc commit` after it."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from tasks.common.errors import PipelineError, PipelineLockedError
from tasks.common.lock import pipeline_lock
from tasks.common.paths import PARAMS_CHECK_STAGE, STAGES, DatasetPaths

logger = logging.getLogger(__name__)


def stage_targets(dataset: str) -> list[str]:
    """The dataset's stages as DVC names them (`train@fashion-mnist`)."""
    return [f"{stage}@{dataset}" for stage in STAGES]


@contextlib.contextmanager
def pipeline_held(paths: DatasetPaths, holder: str, wait_seconds: float = 0) -> Iterator[None]:
    """What a flow run holds while it runs: the dataset's pipeline lock (a stage command, what `dvc repro` runs, is
    refused; tasks/common/lock.py), then DVC's lock on every output of the dataset's stages (any other DVC command
    that would change one is refused before it touches it). Each waits up to `wait_seconds` for its holder."""
    with pipeline_lock(paths.lock_file, holder, wait_seconds), outputs_held(paths.root, paths.dataset, wait_seconds):
        yield


@contextlib.contextmanager
def outputs_held(root: Path, dataset: str, wait_seconds: float = 0) -> Iterator[list[str]]:
    """While the block runs, DVC's own per-output lock (`.dvc/tmp/rwlock`) records every output of the dataset's
    stages as being written by this process, so any other DVC command that would change one (`dvc repro`,
    `checkout`, `commit`, `pull`) is refused by DVC itself before it removes or touches anything ("... is busy, it is
    being blocked by"). This process's own DVC calls still pass: DVC skips an entry whose pid and command are the
    caller's own. An entry left by a killed process is dropped by the next DVC command (DVC checks the pid).

    A DVC command already writing one of them (a `dvc repro` stage between its command and its commit) is waited
    for up to `wait_seconds`, then PipelineLockedError names it. Yields the outputs held."""
    from dvc.lock import LockError
    from dvc.repo import Repo
    from dvc.rwlock import rwlock

    with contextlib.chdir(root), Repo(str(root)) as repo:
        outputs = sorted({str(out.fs_path) for target in stage_targets(dataset)
                          for stage in repo.stage.collect(target) for out in stage.outs})
        tmp_dir, fs, hardlink = repo.tmp_dir, repo.fs, repo.config["core"].get("hardlink_lock", False)
    # The command DVC's own decorator records for this process (dvc/stage/decorators.py), so they match.
    command = " ".join(sys.argv)
    deadline = time.monotonic() + wait_seconds
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(rwlock(tmp_dir, fs, command, [], outputs, hardlink))
                break
            except LockError as error:
                if time.monotonic() >= deadline:
                    lines = str(error).split("\n\n")[0].splitlines()  # "'<path>' is busy, ...", "  (PID n): cmd"...
                    holders = ", ".join(dict.fromkeys(line.strip() for line in lines[1:]))
                    raise PipelineLockedError(f"{dataset}: a DVC command is writing the outputs ({lines[0]} "
                                              f"{holders}); wait for it to finish, then run again") from None
                time.sleep(0.5)
        yield outputs


def changed_stages(root: Path, dataset: str) -> list[str]:
    """Stages of `dataset` whose code, params, data or outputs differ from dvc.lock (empty: nothing changed).

    check_params is left out: it depends on the whole params.yaml, so an edit to another dataset's section marks it
    changed, yet its marker (what the dataset's stages depend on) stays the same while params.yaml is valid. The
    flow has checked params.yaml itself; each stage's own params say whether this dataset changed."""
    from dvc.repo import Repo

    # DVC resolves stage names and paths against the current directory, so work from the repository root.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        changed = repo.status(targets=[stage_targets(dataset)[-1]], with_deps=True)
    return sorted(name for name in changed if name != PARAMS_CHECK_STAGE)


class OutputsNotRecordedError(PipelineError):
    """DVC could not record a run's outputs (its cache not writable, a full disk); the workspace was put back."""


def record_outputs(root: Path, dataset: str, stages: tuple[str, ...] = STAGES) -> list[str]:
    """`dvc commit` the dataset's `stages` (all by default): hash their outputs into DVC's cache, update dvc.lock.

    When DVC cannot (its cache not writable, a full disk), the workspace is put back as the last recorded run left
    it (`restore_recorded`) and OutputsNotRecordedError says, in one line, which step, which path and what to do."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # check_params first: the run checked params.yaml and wrote its marker (flows/training.py), so dvc.lock then
    # agrees, and the next run's `dvc status` does not see params.yaml as changed for every stage.
    targets = [PARAMS_CHECK_STAGE, *(f"{stage}@{dataset}" for stage in stages)]
    with contextlib.chdir(root), Repo(str(root)) as repo:
        cache = repo.cache.local.path
        for target in targets:
            try:
                repo.commit(target, force=True)
            except (DvcException, OSError) as error:  # an unwritable cache comes as PermissionError itself
                failed, why = target, _first_os_error(error)
                break
        else:
            logger.info("recorded %s in dvc.lock", ", ".join(targets))
            return targets
    restore_recorded(root, dataset)
    raise OutputsNotRecordedError(
        f"dvc commit of {failed} could not write DVC's cache ({why}); dvc.lock and {dataset}'s outputs are back as "
        f"the last recorded run left them; make {cache} writable again (lsattr -d, chattr -R -i, chmod -R u+w, "
        "free disk space), then run again")


def restore_recorded(root: Path, dataset: str) -> None:
    """Put dvc.lock, the dataset's tracked reports and its outputs back as the last recorded run left them: git's
    copies of the first two, then `dvc checkout` of the rest from DVC's cache."""
    import subprocess

    from dvc.repo import Repo

    reports = DatasetPaths(root, dataset).reports_dir.relative_to(root)
    subprocess.run(["git", "checkout", "--", "dvc.lock", str(reports)], cwd=root, capture_output=True, timeout=120)
    with contextlib.chdir(root), Repo(str(root)) as repo:
        repo.checkout(targets=stage_targets(dataset), force=True)
    logger.warning("%s: dvc.lock and the outputs put back as the last recorded run left them", dataset)


def _first_os_error(error: BaseException) -> str:
    """The path and reason of the first OSError behind a DVC error, or DVC's message on one line."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.filename:
            return f"{seen.filename}: {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    return " ".join(str(error).split())


def locked_output_hash(root: Path, stage: str, dataset: str) -> str | None:
    """The md5 dvc.lock records for the first output of `stage@dataset` (None if never recorded)."""
    lock_file = root / "dvc.lock"
    if not lock_file.exists():
        return None
    entry = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}).get(f"{stage}@{dataset}")
    return entry["outs"][0].get("md5") if entry and entry.get("outs") else None
