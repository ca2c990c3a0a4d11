"""DVC's model registry: git tags in GTO's format on the commits that change a dataset's champion.

dvc.yaml declares each dataset's production model as an artifact, `<dataset>-model`. A commit that promotes a new
champion registers a version of it (`<dataset>-model@v<N>.0.0`) and assigns it the stage `prod`
(`<dataset>-model#prod#<k>`); a `make rollback` commit assigns `prod` to itself, whose production folder holds the
restored champion. So `dvc artifacts get . <dataset>-model --stage prod` fetches the model in production, and
`--rev v2.0.0` an earlier champion. Identical model bytes are one version: promoted again, they move `prod` if
it holds other bytes, and register nothing new. Tags are local, like the commits (`git push --tags` publishes
them), except in clone mode, where each run pushes its tags with its commit (versioning/remote.py).
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any, cast
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)
PRODUCTION_STAGE = "prod"


def artifact_name(dataset: str) -> str:
    """The artifact dvc.yaml declares for the dataset's production model (tests/test_dvc_yaml.py checks it)."""
    return f"{dataset}-model"


def register_champion(root: Path, dataset: str, commit: str, message: str, **tagger: str) -> None:
    """A new champion at `commit`: a new major version, in the `prod` stage. `tagger`: author and author_email,
    where git has no identity configured."""
    import gto.api

    name = artifact_name(dataset)
    versions = subprocess.run(["git", "tag", "--list", f"{name}@v*"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.split()
    current = _model_md5_at(root, dataset, commit)
    same = {tag for tag in versions if current is not None and _model_md5_at(root, dataset, tag) == current}
    if same:  # identical bytes are one version (issue 27: one md5 was registered as v1.0.0 to v4.0.0)
        if _model_md5_at(root, dataset, _production_tag(root, name)) != current:
            assign_production(root, dataset, commit, message, **tagger)  # e.g. after a rollback to other bytes
        logger.info("%s at %s holds the model of %s: no new version", name, commit[:10], ", ".join(sorted(same)))
        return
    version = f"v{len(versions) + 1}.0.0"
    identity: dict[str, Any] = dict(tagger)  # gto's author and author_email
    gto.api.register(str(root), name, commit, version=version, message=message, push=False, **identity)
    gto.api.assign(str(root), name, PRODUCTION_STAGE, ref=commit, message=message, push=False, **identity)
    logger.info("registered %s %s at %s in stage %s (dvc artifacts get)", name, version, commit[:10],
                PRODUCTION_STAGE)


def assign_production(root: Path, dataset: str, commit: str, message: str, **tagger: str) -> None:
    """A restored champion at `commit` (a rollback): the `prod` stage moves there, no new version."""
    import gto.api

    gto.api.assign(str(root), artifact_name(dataset), PRODUCTION_STAGE, ref=commit, message=message, push=False,
                   skip_registration=True, **cast(dict[str, Any], tagger))
    logger.info("%s in stage %s is now %s (dvc artifacts get)", artifact_name(dataset), PRODUCTION_STAGE, commit[:10])


def _production_tag(root: Path, name: str) -> str | None:
    """The newest assignment of the `prod` stage (GTO's `<artifact>#prod#<n>` tags), or None."""
    tags = subprocess.run(["git", "tag", "--list", f"{name}#{PRODUCTION_STAGE}#*"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.split()
    return max(tags, key=lambda tag: int(tag.rsplit("#", 1)[1])) if tags else None


def _model_md5_at(root: Path, dataset: str, revision: str | None) -> str | None:
    """The md5 that dvc.lock records for the dataset's model.keras at `revision` (a commit or a tag)."""
    from tasks.lib.run_history import model_md5

    if revision is None:
        return None
    shown = subprocess.run(["git", "show", f"{revision}^{{commit}}:dvc.lock"], cwd=root, capture_output=True,
                           text=True)
    return model_md5(yaml.safe_load(shown.stdout) or {}, dataset) if shown.returncode == 0 else None
