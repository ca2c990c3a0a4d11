"""Any recorded version of a dataset's files, read from git and DVC's cache (or the DVC remote, which DVC asks
when the cache lacks them). A version is a commit, as `make history` lists them. Read by `make rollback`
(versioning/rollback.py) and `predict --version` (tools/predict.py).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tasks.common.errors import VersionError


def resolve_commit(root: Path, version: str) -> str:
    """The full hash of the commit `version` names (a hash or its prefix, a tag, HEAD~2...)."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{version}^{{commit}}"], cwd=root,
                           capture_output=True, text=True)
    if found.returncode != 0 or not version.strip():
        raise VersionError(f"version {version!r}: no such commit in {root} (`make history DATASET=...` lists the "
                           "versions of a dataset)")
    return found.stdout.strip()


def fetch(root: Path, commit: str, path: str, destination: Path) -> Path:
    """Copy `path` (a file or folder DVC tracks) as it was at `commit` to `destination`; return `destination`."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    try:
        filesystem = DVCFileSystem(str(root), rev=commit)
        if not filesystem.exists(path):
            raise VersionError(f"version {commit[:10]}: {path} is not recorded there (dvc.lock at that commit has no "
                               "such output)")
        if filesystem.isdir(path):
            destination.mkdir(parents=True, exist_ok=True)
            for name in filesystem.ls(path, detail=False):
                filesystem.get_file(name, str(destination / Path(name).name))
        else:
            filesystem.get_file(path, str(destination))
    except (DvcException, OSError) as error:
        raise VersionError(f"version {commit[:10]}: cannot read {path} from DVC's cache or remote "
                           f"({type(error).__name__}: {error}); `dvc pull` may bring it") from None
    return destination


def file_md5(path: Path) -> str:
    """What dvc.lock records for a file: the md5 of its bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
