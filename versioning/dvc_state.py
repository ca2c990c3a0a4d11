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
from tasks.common.fileio import write_bytes_atomic
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
    stages as being written by this process, so another DVC command that runs a stage on them (`dvc repro`, `dvc
    commit`) is refused by DVC itself before it removes or touches anything ("... is busy, it is being blocked by");
    so is a read-only `dvc status`. `dvc checkout` and `dvc pull` are not: DVC 3 runs them without that lock. This
    process's own DVC calls still pass: DVC skips an entry whose pid and command are the caller's own. An entry left
    by a killed process is dropped by the next DVC command (DVC checks the pid). In a container (the Docker pool)
    the paths and pids are the container's, so the host's DVC commands are not refused.

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
    while True:
        held = rwlock(tmp_dir, fs, command, [], outputs, hardlink)
        try:
            held.__enter__()
            break
        except LockError as error:
            if time.monotonic() >= deadline:
                lines = str(error).split("\n\n")[0].splitlines()  # "'<path>' is busy, ...", "  (PID n): cmd"...
                holders = ", ".join(dict.fromkeys(line.strip() for line in lines[1:]))
                raise PipelineLockedError(f"{dataset}: a DVC command is writing the outputs ({lines[0]} "
                                          f"{holders}); wait for it to finish, then run again") from None
            time.sleep(0.5)
    try:
        yield outputs
    finally:
        try:
            held.__exit__(None, None, None)
        except Exception as error:  # the lock file removed or edited meanwhile: the run's own work stands
            logger.warning("%s: DVC's lock on the outputs could not be released (%s: %s); DVC drops this process's "
                           "entry once it has ended", dataset, type(error).__name__, error)


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

    When `stages` is a prefix of STAGES (a flow run's), one commit of the last stage with its upstream stages, which
    are check_params and the others, so dvc.lock is read and written once: DVC rewrites the whole file (a
    round-trip YAML parse and dump) for each commit call, which, a stage at a time, was 13-16 s of a mnist-sample
    flow run's tail against 3.7-4.8 s (AMD EPYC without AVX-512). Any target the graph did not reach, and every
    stage of another list (a rollback's promote and report, whose upstream stages it did not run), is committed on
    its own.

    When DVC cannot write (its cache not writable, a full disk: an OSError behind DVC's error), the workspace is put
    back as the last recorded run left it (`restore_recorded`) and OutputsNotRecordedError says, in one line, which
    stages, which path and what to do. Any other error is DVC's own, raised as it is."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # check_params first: the run checked params.yaml and wrote its marker (flows/training.py), so dvc.lock then
    # agrees, and the next run's `dvc status` does not see params.yaml as changed for every stage.
    targets = [PARAMS_CHECK_STAGE, *(f"{stage}@{dataset}" for stage in stages)]
    lock_file = root / "dvc.lock"
    recorded = lock_file.read_bytes() if lock_file.exists() else None  # what the last recorded run left
    with contextlib.chdir(root), Repo(str(root)) as repo, _transfer_errors_unlogged():
        cache = repo.cache.local.path
        try:
            committed: set[str] = set()
            if tuple(stages) == STAGES[:len(stages)]:
                committed = {stage.addressing for stage in repo.commit(targets[-1], with_deps=True, force=True)}
            for target in targets:
                if target not in committed:
                    repo.commit(target, force=True)
        except (DvcException, OSError) as error:  # an unwritable cache comes as PermissionError itself
            if (why := _first_os_error(error)) is None:
                raise
        else:
            logger.info("recorded %s in dvc.lock", ", ".join(targets))
            return targets
    put_back = restore_recorded(root, dataset, recorded)
    raise OutputsNotRecordedError(
        f"dvc commit of {dataset}'s stages ({targets[1]} to {targets[-1]}) could not write DVC's cache ({why}); "
        f"{put_back}; make {cache} writable again (lsattr -d, chattr -R -i, chmod -R u+w, free disk space), then run "
        "again")


# What a run adds to these (the data downloaded, a drop of new images) is kept when it is put back: ingest has moved
# the drop out of the inbox, so its shard is the only copy. The next run finds them changed and records them.
KEPT_WHEN_PUT_BACK = ("download", "ingest")


def restore_recorded(root: Path, dataset: str, recorded: bytes | None) -> str:
    """Put dvc.lock back to `recorded` (its bytes before the run's commits), then the dataset's outputs from DVC's
    cache as it records them (`dvc checkout`), except the data a run adds (KEPT_WHEN_PUT_BACK), and the dataset's
    reports from git when git's HEAD holds that same dvc.lock (a committed run). Says what it put back, and what it
    could not."""
    import subprocess

    from dvc.repo import Repo

    lock_file = root / "dvc.lock"
    if recorded is not None:
        write_bytes_atomic(lock_file, recorded)
    said, not_back = ["dvc.lock"], ""
    targets = [target for target in stage_targets(dataset) if target.split("@")[0] not in KEPT_WHEN_PUT_BACK]
    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            repo.checkout(targets=targets, force=True)
        said.append(f"{dataset}'s outputs")
    except Exception as error:  # a cache missing what dvc.lock records: the message says they are not back
        not_back = (f"; {dataset}'s outputs could not be put back (dvc checkout: {' '.join(str(error).split())}): "
                    "run `dvc checkout` once the cache is whole")
    head = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=root, capture_output=True, timeout=60)
    reports = DatasetPaths(root, dataset).reports_dir.relative_to(root)
    if head.returncode == 0 and head.stdout == recorded:  # git's reports are the recorded run's
        checkout = subprocess.run(["git", "checkout", "HEAD", "--", str(reports)], cwd=root, capture_output=True,
                                  timeout=120)
        if checkout.returncode == 0:
            said.append(f"{dataset}'s reports")
    if f"{dataset}'s reports" not in said:
        not_back += (f"; {dataset}'s reports are as this run left them (git's HEAD does not hold the recorded "
                     "dvc.lock, and DVC keeps no copy of them)")
    back = f"{', '.join(said[:-1])} and {said[-1]} are" if len(said) > 1 else f"{said[0]} is"
    return f"{back} back as the last recorded run left them{not_back}"


@contextlib.contextmanager
def _transfer_errors_unlogged() -> Iterator[None]:
    """Keep DVC from logging, with its traceback, each file it could not copy into its cache ("failed to transfer",
    logged when a stage's output holds several files): the OSError then fails the commit, and
    OutputsNotRecordedError says it in one line."""
    def unlogged(record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], OSError))

    transfer_logger = logging.getLogger("dvc_data.hashfile.transfer")
    transfer_logger.addFilter(unlogged)
    try:
        yield
    finally:
        transfer_logger.removeFilter(unlogged)


def _first_os_error(error: BaseException) -> str | None:
    """The path and reason of the first OSError behind a DVC error (None without one)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return f"{seen.filename}: {seen.strerror}" if seen.filename else str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def locked_output_hash(root: Path, stage: str, dataset: str) -> str | None:
    """The md5 dvc.lock records for the first output of `stage@dataset` (None if never recorded)."""
    lock_file = root / "dvc.lock"
    if not lock_file.exists():
        return None
    entry = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}).get(f"{stage}@{dataset}")
    return entry["outs"][0].get("md5") if entry and entry.get("outs") else None
