"""Every version is a commit: a run started by a deployment commits what it changed for its dataset to git, on the
checkout's current branch, and pushes the data to the DVC remote when one is configured.

`versioning.commit` in params.yaml says which runs commit: `deployments` (the default: scheduled, triggered and
`prefect deployment run` runs), `always` (`make flow` and `make run` too) or `never`. A run that changed nothing
commits nothing; a failed run never reaches this, except one that drift blocked, which commits the data version it
ingested (flows/training.py).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import subprocess
import sys
import time
from pathlib import Path

from versioning.registry import assign_production, register_champion
from versioning.remote import is_remote_run, publish
from tasks.common.config import load_params, read_overrides
from tasks.common.errors import PipelineError
from tasks.common.paths import INBOX_PLACEHOLDER, PARAMS_FILE, STAGES, DatasetPaths
from tasks.lib.drops import describe_version, read_index
from tasks.lib.run_history import CLAUSE_SEPARATOR
from tasks.lib.run_log import write_run_log

logger = logging.getLogger(__name__)
_INDEX_LOCK_TRIES = 30
# Used only when the checkout has no git identity of its own (a fresh server account, a CI runner).
# A commit's subject line at most this long; the rest of a run's message goes to the body.
SUBJECT_LIMIT = 100
FALLBACK_IDENTITY = ("-c", "user.name=training-pipeline", "-c", "user.email=training-pipeline@localhost")


def versioned_files(paths: DatasetPaths) -> list[Path]:
    """What git versions for the dataset: dvc.lock, its reports folder (DVC's cache-less metrics and plots), the
    .gitignore files DVC keeps beside its outputs, the inbox placeholder, the drift acceptances, the link to its
    local_dir (data/sources/<dataset>, a dependency of download: a clone needs it) and its overrides file while it
    holds none (`{}`, a params file of its stages; a run's overrides are in dvc.lock, never committed there)."""
    ignores = {path.parent / ".gitignore" for stage in STAGES for path in paths.outputs(stage)}
    candidates = [paths.root / "dvc.lock", paths.reports_dir, *sorted(ignores), paths.inbox_dir / INBOX_PLACEHOLDER,
                  paths.drift_acceptance_dir, paths.source_link]
    if paths.overrides_file.is_file() and read_overrides(paths.overrides_file) == {}:
        candidates.append(paths.overrides_file)
    return [path for path in candidates if path.exists() or path.is_symlink()]


def data_version(paths: DatasetPaths) -> str:
    return describe_version(read_index(paths).drops if paths.drop_index_file.exists() else [])


def commit_version(paths: DatasetPaths, message: str, champion: str | None = None) -> str | None:
    """Commit the dataset's versioned files as they are now (nothing else, even what the user staged), then
    `dvc push` its stages when a DVC remote is configured. `champion`: "promoted" (a new champion: registered as a
    new version in the `prod` stage) or "restored" (a rollback: `prod` moves to this commit), versioning/registry.py.
    The new commit's hash, or None when nothing changed."""
    root = paths.root
    if _git(root, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        logger.warning("%s is not a git checkout: nothing committed", root)
        return None
    # What an interrupted stage left in the reports folder (.validate-* folders, .<name>.<random>.tmp<suffix> files
    # and folders: tasks/common/fileio.py) is never committed; DVC's .gitignore there is.
    files = [str(path.relative_to(root)) for path in versioned_files(paths)]
    reports = paths.reports_dir.relative_to(root)
    files += [f":(exclude){reports}/.validate-*", f":(exclude){reports}/.*.tmp*"]
    _git(root, "add", "--", *files)
    if _git(root, "diff", "--cached", "--quiet", "--", *files, check=False).returncode == 0:
        return None
    identity = () if _git(root, "config", "user.email", check=False).stdout.strip() else FALLBACK_IDENTITY
    _git(root, *identity, "commit", "-q", *(part for line in commit_message(message) for part in ("-m", line)),
         "--", *files)
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    tagger = {"author": identity[1].split("=", 1)[1], "author_email": identity[3].split("=", 1)[1]} if identity else {}
    if is_remote_run():  # a worker's fresh clone: dvc push, then tags and branch to the git remote (remote.py)
        commit = publish(root, paths.dataset, champion, message, tagger)
    else:
        if champion == "promoted":
            register_champion(root, paths.dataset, commit, message, **tagger)
        elif champion == "restored":
            assign_production(root, paths.dataset, commit, message, **tagger)
        _push(root, paths.dataset)
    logger.info("committed %s: %s", commit[:10], message)
    write_run_log(paths)  # the report page's history now includes this run (tasks/lib/run_log.py)
    return commit


def _push(root: Path, dataset: str) -> None:
    from dvc.repo import Repo

    from versioning.dvc_state import stage_targets

    if not (root / ".dvc").is_dir():
        return
    from dvc.exceptions import DvcException

    with contextlib.chdir(root), Repo(str(root)) as repo:
        if not repo.config.get("core", {}).get("remote"):
            return
        try:
            pushed = repo.push(targets=stage_targets(dataset))
        except DvcException as error:  # the commit stands; the data waits in the local cache for the next push
            logger.error("dvc push to the default remote failed (%s); the commit is made, the data is in the local "
                         "cache: run `dvc push` once the remote is back", error)
            return
    logger.info("dvc push: %s file(s) sent to the default remote", pushed)


def _git(root: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """A git command; while another process holds git's index lock (another dataset's run committing), it waits."""
    for _ in range(_INDEX_LOCK_TRIES):
        completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, timeout=120)
        if "index.lock" not in completed.stderr:
            break
        time.sleep(1)
    if check and completed.returncode != 0:
        raise PipelineError(f"git {' '.join(arguments[:3])} failed in {root}: {completed.stderr.strip()}")
    return completed


def commit_message(message: str, limit: int = SUBJECT_LIMIT) -> list[str]:
    """A run's message as git paragraphs: a subject of at most `limit` characters (its first "; "-separated
    clauses; the first whatever its length), then the other clauses, a line each, as the body. `git log --format=%s`
    and `make history` read it back whole (tasks/lib/run_history.py)."""
    clauses = message.split(CLAUSE_SEPARATOR)
    subject = clauses.pop(0)
    while clauses and len(subject) + len(CLAUSE_SEPARATOR) + len(clauses[0]) <= limit:
        subject += CLAUSE_SEPARATOR + clauses.pop(0)
    return [subject, "\n".join(clauses)] if clauses else [subject]


def commit_run(paths: DatasetPaths, setting: str, outcome: str) -> str | None:
    """At the end of a flow run that changed something: commit when `setting` says this kind of run commits."""
    from prefect.runtime import deployment

    if setting == "never" or (setting == "deployments" and not deployment.id):
        return None
    return commit_version(paths, f"{paths.dataset}: {describe_trigger()}: data {data_version(paths)}; {outcome}",
                          "promoted" if outcome.startswith("promoted") else None)


def describe_trigger() -> str:
    """What started this flow run: its deployment's schedule, an automation (the new-data trigger), or a person."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment, flow_run

    if not deployment.id:
        return f"flow run {flow_run.name} outside a deployment"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
    if run.auto_scheduled:
        how = "scheduled"
    elif run.created_by is not None and run.created_by.type == "AUTOMATION":
        how = f"triggered by {run.created_by.display_value or 'an automation'}"
    else:
        how = "started by hand"
    return f"{how} run {run.name} of deployment {deployment.name}"


def main(argv: list[str] | None = None) -> int:
    """After `make run`: with versioning.commit `always`, commit each listed dataset's new version."""
    from tasks.lib.outputs import PromotionDecision, read_record

    parser = argparse.ArgumentParser(prog="python -m versioning.commits", description=main.__doc__)
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE))
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        params = load_params(arguments.params)
        if params.versioning.commit != "always":
            return 0
        for dataset in params.datasets:
            paths = DatasetPaths(Path.cwd(), dataset)
            decision = read_record(paths.promotion_file, PromotionDecision)
            commit_version(paths, f"{dataset}: make run: data {data_version(paths)}; {decision.reason}",
                           "promoted" if decision.promoted else None)
    except PipelineError as error:
        print(f"commit failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
