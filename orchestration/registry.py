"""DVC's model registry: git tags in GTO's format on the commits that change a dataset's champion.

dvc.yaml declares each dataset's production model as an artifact, `<dataset>-model`. A commit that promotes a new
champion registers a version of it (`<dataset>-model@v<N>.0.0`) and assigns it the stage `prod`
(`<dataset>-model#prod#<k>`); a `make rollback` commit assigns `prod` to itself, whose production folder holds the
restored champion. So `dvc artifacts get . <dataset>-model --stage prod` fetches the model in production, and
`--rev v2.0.0` an earlier champion. Tags are local, like the commits: `git push --tags` publishes them.
"""

from __future__ import annotations

import logging
import subprocess
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
    same = _same_model_versions(root, dataset, commit, versions)
    if same:  # identical bytes are one version (issue 27: one md5 was registered as v1.0.0 to v4.0.0)
        newest = max(versions, key=_version_number)
        if newest not in same:  # an older version's bytes again: production moves to this commit, no new version
            assign_production(root, dataset, commit, message, **tagger)
        logger.info("%s at %s holds the model of %s: no new version", name, commit[:10], ", ".join(sorted(same)))
        return
    version = f"v{len(versions) + 1}.0.0"
    gto.api.register(str(root), name, commit, version=version, message=message, push=False, **tagger)
    gto.api.assign(str(root), name, PRODUCTION_STAGE, ref=commit, message=message, push=False, **tagger)
    logger.info("registered %s %s at %s in stage %s (dvc artifacts get)", name, version, commit[:10],
                PRODUCTION_STAGE)


def assign_production(root: Path, dataset: str, commit: str, message: str, **tagger: str) -> None:
    """A restored champion at `commit` (a rollback): the `prod` stage moves there, no new version."""
    import gto.api

    gto.api.assign(str(root), artifact_name(dataset), PRODUCTION_STAGE, ref=commit, message=message, push=False,
                   skip_registration=True, **tagger)
    logger.info("%s in stage %s is now %s (dvc artifacts get)", artifact_name(dataset), PRODUCTION_STAGE, commit[:10])


def _version_number(tag: str) -> int:
    return int(tag.rsplit("@v", 1)[1].split(".")[0])


def _same_model_versions(root: Path, dataset: str, commit: str, versions: list[str]) -> set[str]:
    """The version tags whose commit's dvc.lock records the same model bytes (model.keras's md5) as `commit`'s."""
    from tasks.lib.run_history import model_md5

    def md5_at(revision: str) -> str | None:
        shown = subprocess.run(["git", "show", f"{revision}:dvc.lock"], cwd=root, capture_output=True, text=True)
        return model_md5(yaml.safe_load(shown.stdout) or {}, dataset) if shown.returncode == 0 else None

    current = md5_at(commit)
    return {tag for tag in versions if current is not None and md5_at(f"{tag}^{{commit}}") == current}
