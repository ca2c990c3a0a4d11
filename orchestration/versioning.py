"""DVC as the source of truth for "what changed": status before a run, `dvc commit` after it."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import yaml

from tasks.common.paths import PARAMS_CHECK_STAGE, STAGES

logger = logging.getLogger(__name__)


def stage_targets(dataset: str) -> list[str]:
    """The dataset's stages as DVC names them (`train@fashion-mnist`)."""
    return [f"{stage}@{dataset}" for stage in STAGES]


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


def record_outputs(root: Path, dataset: str, stages: tuple[str, ...] = STAGES) -> list[str]:
    """`dvc commit` the dataset's `stages` (all by default): hash their outputs into DVC's cache, update dvc.lock."""
    from dvc.repo import Repo

    # check_params first: the run checked params.yaml and wrote its marker (flows/training.py), so dvc.lock then
    # agrees, and the next run's `dvc status` does not see params.yaml as changed for every stage.
    targets = [PARAMS_CHECK_STAGE, *(f"{stage}@{dataset}" for stage in stages)]
    with contextlib.chdir(root), Repo(str(root)) as repo:
        for target in targets:
            repo.commit(target, force=True)
    logger.info("recorded %s in dvc.lock", ", ".join(targets))
    return targets


def locked_output_hash(root: Path, stage: str, dataset: str) -> str | None:
    """The md5 dvc.lock records for the first output of `stage@dataset` (None if never recorded)."""
    lock_file = root / "dvc.lock"
    if not lock_file.exists():
        return None
    entry = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}).get(f"{stage}@{dataset}")
    return entry["outs"][0].get("md5") if entry and entry.get("outs") else None
