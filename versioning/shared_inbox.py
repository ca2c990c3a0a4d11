"""New images for workers that do not hold the repository: an inbox in the DVC remote.

A clone-mode flow run (versioning/remote.py) starts from a fresh clone on some worker, so files copied into the
developer's data/inbox/ never reach it. `make ingest DATASET=<d> FROM=<folder>` then sends the folder to
`<default DVC remote>/inbox/<d>/<drop>/` instead, and writes `<drop>.complete` last: a drop is whole once that
marker exists, and a half-sent one is never taken. The run fetches every whole drop of its dataset into its own
data/inbox/<d>/ before ingest, and deletes them from the remote only once its version (the ingested images with it)
is pushed to both remotes. A run that fails leaves them for the next one: nothing is lost.

Why the DVC remote: every worker already reaches it with the keys it needs (it pulls and pushes data there), it is
the one place a team configures once (.dvc/config), and it is reached through DVC's own filesystem for that remote
(its endpoint and credentials as `dvc push` uses them). DVC's own objects live under `files/` there, apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

from tasks.common.errors import PipelineError
from tasks.lib.inbox_files import is_temporary

PREFIX = "inbox"
COMPLETE = ".complete"
# The drops a run fetched, cleared from the remote once its version is pushed (a fresh clone's own folder).
FETCHED_FILE = Path(".dvc/tmp/shared-inbox-fetched.json")


def _remote(root: Path):
    """(DVC's filesystem for the default remote, the remote's path in it); a PipelineError when there is none."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            name = repo.config.get("core", {}).get("remote")
            if name:
                remote = repo.cloud.get_remote(name)
                return remote.fs, remote.path
    except DvcException as error:
        raise PipelineError(f"DVC's default remote of {root}: {' '.join(str(error).split())}") from None
    raise PipelineError(f"{root}: no default DVC remote; new images for workers in clone mode go to its inbox/ "
                        "prefix: `dvc remote add --default <name> s3://...` first (docs/SCALING.md)")


def drop_folder(root: Path, dataset: str) -> str:
    """The dataset's inbox in the remote, as a URL (s3://bucket/.../inbox/<dataset>)."""
    fs, base = _remote(root)
    return fs.unstrip_protocol(fs.join(base, PREFIX, dataset))


def send_drop(root: Path, dataset: str, source: Path) -> tuple[str, int]:
    """Upload every file under `source` (`{train,test}/<class>/*.png`) that ingest would take as one new drop of
    `dataset`, its marker last; (the drop's URL, the number of files)."""
    if not source.is_dir():
        raise PipelineError(f"{source}: no such folder; expected {source}/{{train,test}}/<class>/*.png")
    # What ingest would never take (hidden, `*.part`, `*.tmp`) is not sent: the drop is deleted once ingested.
    files = [path for path in sorted(source.rglob("*"))
             if path.is_file() and not is_temporary(path.relative_to(source).as_posix())]
    if not files:
        raise PipelineError(f"{source}: no files; expected {source}/{{train,test}}/<class>/*.png")
    fs, base = _remote(root)
    drop = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"  # sorted as sent
    folder = fs.join(base, PREFIX, dataset, drop)
    for path in files:
        fs.put_file(str(path), fs.join(folder, *path.relative_to(source).parts))
    fs.pipe_file(folder + COMPLETE, json.dumps({"files": len(files)}).encode())
    return fs.unstrip_protocol(folder), len(files)


def fetch_drops(root: Path, dataset: str, inbox: Path) -> list[str]:
    """Copy every whole drop of `dataset` from the remote into `inbox` (each file under a temporary name renamed
    when complete, as ingest expects), remember them in FETCHED_FILE; their names."""
    fs, base = _remote(root)
    folder = fs.join(base, PREFIX, dataset)
    try:
        drops = _take(fs, folder, inbox)
    except Exception as error:  # the remote refused a listing or a read (unreachable, keys, permissions): one line
        raise PipelineError(f"fetching {dataset}'s new images from {fs.unstrip_protocol(folder)} failed: "
                            f"{type(error).__name__}: {' '.join(str(error).split())}; they stay there for the next "
                            "run") from None
    record = root / FETCHED_FILE
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"dataset": dataset, "drops": drops}))
    return drops


def _take(fs, folder: str, inbox: Path) -> list[str]:
    try:
        listed = fs.ls(folder, detail=False, refresh=True)  # not a listing cached earlier in this process
    except FileNotFoundError:
        listed = []
    drops = sorted(fs.name(path)[:-len(COMPLETE)] for path in listed if fs.name(path).endswith(COMPLETE))
    for drop in drops:
        source = fs.join(folder, drop)
        for path in sorted(fs.find(source)):
            parts = fs.relparts(path, source)
            target = inbox.joinpath(*parts)
            if target.exists():  # two drops with a file of the same name: both kept
                target = target.with_name(f"{drop}-{target.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.name}.part")
            fs.get_file(path, str(partial))
            os.replace(partial, target)
    return drops


def clear_fetched(root: Path) -> list[str]:
    """Delete from the remote the drops this run fetched (its version is pushed); their names. Each drop's marker
    goes first, so a drop half deleted is never taken again."""
    record = root / FETCHED_FILE
    if not record.exists():
        return []
    fetched = json.loads(record.read_text())
    fs, base = _remote(root)
    folder = fs.join(base, PREFIX, fetched["dataset"])
    for drop in fetched["drops"]:
        fs.rm_file(fs.join(folder, drop) + COMPLETE)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(fs.join(folder, drop), recursive=True)
    record.unlink()
    return fetched["drops"]
