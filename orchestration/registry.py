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
