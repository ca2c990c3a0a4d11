"""Record a flow run's outputs in DVC, so `dvc status` is clean and `dvc repro` has nothing to do afterwards."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from tasks import STAGES

logger = logging.getLogger(__name__)


def stage_targets(dataset: str) -> list[str]:
    """The dataset's stages as DVC names them (`train@fashion-mnist`)."""
    return [f"{stage}@{dataset}" for stage in STAGES]


def record_outputs(root: Path, dataset: str) -> list[str]:
    """`dvc commit` the dataset's stages: hash their outputs into DVC's cache and update dvc.lock."""
    from dvc.repo import Repo

    targets = stage_targets(dataset)
    # DVC resolves stage names and paths against the current directory, so work from the repository root.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        for target in targets:
            repo.commit(target, force=True)
    logger.info("recorded %s in dvc.lock", ", ".join(targets))
    return targets
