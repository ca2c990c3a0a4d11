"""A flow run on a worker that does not hold the repository: it takes code and data from the remotes and pushes back
what it made.

Deployments in clone mode (`make serve` with PIPELINE_GIT_REMOTE set, orchestration/deployments.py) start each flow
run with Prefect's `git_clone` pull step, in a fresh folder, and set REMOTE_RUN_VARIABLE. The flow then:
1. `prepare`: fetches the history and tags that Prefect's shallow clone left out (the registry numbers versions
   from the tags, `make history` reads the log), then `dvc pull`s the dataset's recorded outputs (what the remote
   does not hold yet is rebuilt by the run, as any missing output is), then the new images waiting for the
   dataset in the DVC remote's inbox (versioning/shared_inbox.py, deleted there once this run's version is
   pushed);
2. runs the pipeline and commits its version, as on one machine (versioning/commits.py);
3. `publish`: `dvc push` of the dataset's outputs, then the registry tags of a new champion, then one
   `git push --atomic` of the branch and those tags. When another run pushed first, it rebases onto the remote
   branch (a conflict in dvc.lock, the only file two datasets' runs share, is resolved by taking the remote's and
   recording this run's stages again with `dvc commit`, never by a text merge), tags again, and pushes again. It
   never force-pushes. A push it cannot make fails the run with one line; the git remote then holds nothing of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from pathlib import Path

from versioning.shared_inbox import clear_fetched, drop_folder, fetch_drops
from tasks.common.errors import PipelineError
from tasks.common.paths import DatasetPaths

logger = logging.getLogger(__name__)
REMOTE_RUN_VARIABLE = "PIPELINE_REMOTE_RUN"
GIT_REMOTE = "origin"
PUSH_ATTEMPTS = 5


def _say(message: str, *arguments, level: int = logging.INFO) -> None:
    """Into the flow run's log (the worker's output, the UI) when there is one, else this module's logger."""
    from prefect.exceptions import MissingContextError

    try:
        from prefect import get_run_logger

        get_run_logger().log(level, message, *arguments)
    except MissingContextError:
        logger.log(level, message, *arguments)


def is_remote_run() -> bool:
    return os.environ.get(REMOTE_RUN_VARIABLE) == "1"


def _git(root: Path, *arguments: str, check: bool = True, tagger: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess:
    """A git command, never waiting for a person; `tagger` (author, author_email) names who commits where git has no
    identity configured (a rebase writes commits)."""
    identity = {"GIT_AUTHOR_NAME": tagger["author"], "GIT_AUTHOR_EMAIL": tagger["author_email"],
                "GIT_COMMITTER_NAME": tagger["author"], "GIT_COMMITTER_EMAIL": tagger["author_email"]} if tagger else {}
    completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "GIT_EDITOR": "true", "GIT_TERMINAL_PROMPT": "0", **identity})
    if check and completed.returncode != 0:
        raise PipelineError(f"git {' '.join(arguments[:2])} failed in {root}: "
                            f"{' '.join(completed.stderr.split()) or completed.stdout.strip()}")
    return completed


def current_branch(root: Path) -> str:
    return _git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()


def prepare(root: Path, dataset: str) -> None:
    """History and tags from the git remote, then the dataset's outputs from the DVC remote."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from versioning.dvc_state import stage_targets

    shallow = _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    _git(root, "fetch", "--quiet", "--tags", *(["--unshallow"] if shallow else []), GIT_REMOTE)
    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            pulled = repo.pull(targets=stage_targets(dataset), allow_missing=True)
    except DvcException as error:
        raise PipelineError(f"dvc pull of {dataset}'s outputs from the default DVC remote failed: "
                            f"{' '.join(str(error).split())}") from None
    _say("remote run: history and tags fetched; dvc pull: %s file(s) of %s fetched", pulled["stats"]["fetched"],
         dataset)
    inbox = DatasetPaths(root, dataset).inbox_dir
    drops = fetch_drops(root, dataset, inbox)
    if drops:
        _say("shared inbox: %d drop(s) of new images fetched into %s (%s)", len(drops), inbox, ", ".join(drops))


def push_outputs(root: Path, dataset: str) -> None:
    """`dvc push` of the dataset's stages, or a PipelineError: no commit reaches git without its data."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from versioning.dvc_state import stage_targets

    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            pushed = repo.push(targets=stage_targets(dataset))
    except DvcException as error:
        raise PipelineError(f"dvc push of {dataset}'s outputs to the default DVC remote failed, so nothing was "
                            f"pushed to git: {' '.join(str(error).split())}") from None
    _say("dvc push: %s file(s) of %s sent to the default remote", pushed, dataset)


def rebase(root: Path, dataset: str, upstream: str, tagger: dict[str, str] | None = None) -> None:
    """Replay this run's commit on `upstream`. A conflict in dvc.lock takes upstream's file with this run's own
    records of its dataset's stages (what it built, from what: never a text merge); one in a .gitignore DVC keeps
    (new datasets' outputs listed beside each other) keeps the lines of both; a conflict anywhere else stops the run,
    the rebase undone."""
    # What this run made without committing and upstream now tracks: another listed dataset's link to its
    # local_dir (data/sources/<dataset>, made for every listed dataset), the same link upstream committed.
    untracked = set(_git(root, "ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")) - {""}
    for relative in untracked & set(_git(root, "diff", "--name-only", "-z", "HEAD", upstream).stdout.split("\0")):
        (root / relative).unlink()
    # --autostash: a run with overrides holds them in its dataset's overrides file, which git tracks as `{}`
    result = _git(root, "rebase", "--autostash", upstream, check=False, tagger=tagger)
    while result.returncode != 0:
        conflicted = _git(root, "diff", "--name-only", "--diff-filter=U").stdout.split()
        unresolvable = [path for path in conflicted if path != "dvc.lock" and Path(path).name != ".gitignore"]
        if unresolvable or not conflicted:
            _git(root, "rebase", "--abort", check=False)
            why = f"conflicts in {unresolvable}" if conflicted else " ".join((result.stderr or result.stdout).split())
            raise PipelineError(f"rebasing {dataset}'s version onto {upstream} failed: {why} (only conflicts in "
                                "dvc.lock and DVC's .gitignore files are resolved by themselves); nothing was pushed "
                                "to git")
        for path in conflicted:
            # stage 2 is the upstream side of a rebase, stage 3 this run's commit
            upstream_text, own_text = (_git(root, "show", f":{side}:{path}", check=False).stdout for side in (2, 3))
            resolved = (_lock_with_own_stages(upstream_text, own_text, dataset) if path == "dvc.lock"
                        else _union_of_lines(upstream_text, own_text))
            (root / path).write_text(resolved)
            _git(root, "add", "--", path)
        result = _git(root, "rebase", "--continue", check=False, tagger=tagger)
    _say("rebased %s's version onto %s", dataset, upstream)


def _lock_with_own_stages(upstream_text: str, own_text: str, dataset: str) -> str:
    """Upstream's dvc.lock, its entries for `dataset`'s stages replaced by this run's own (their outputs and the code,
    params and data they were built from); every other stage as upstream recorded it."""
    from dvc.utils.serialize import dumps_yaml, loads_yaml

    upstream, own = loads_yaml(upstream_text) or {}, loads_yaml(own_text) or {}
    stages = dict(upstream.get("stages") or {})
    for name in [name for name in stages if name.endswith(f"@{dataset}")]:
        del stages[name]
    stages.update({name: entry for name, entry in (own.get("stages") or {}).items() if name.endswith(f"@{dataset}")})
    return dumps_yaml({**upstream, "stages": stages})


def _union_of_lines(upstream_text: str, own_text: str) -> str:
    """Both sides' lines, upstream's first, each once (DVC's .gitignore beside outputs: one line per output)."""
    lines = list(dict.fromkeys(upstream_text.splitlines() + own_text.splitlines()))
    return "\n".join(lines) + "\n"


def release_fetched(root: Path, dataset: str) -> None:
    """A remote run that changed nothing: the shared inbox's drops it fetched added no image (each file refused,
    named in this run's log, or taken by an earlier version), so no version will take them off the DVC remote.
    Delete them now, or every later run would fetch and refuse them again."""
    try:
        if cleared := clear_fetched(root):
            _say("shared inbox: %d drop(s) deleted from the DVC remote: they added no image (each refused file is "
                 "named above)", len(cleared))
    except Exception as error:  # the next run fetches them again and refuses them again
        _say("shared inbox: the drops this run took could not be deleted from the DVC remote (%s): delete them "
             "from %s", " ".join(str(error).split()), drop_folder(root, dataset),
             level=logging.WARNING)


def publish(root: Path, dataset: str, champion: str | None, message: str, tagger: dict[str, str]) -> str:
    """Push the commit at HEAD (and a new champion's registry tags) after its DVC outputs; rebase and retry while
    another run pushes first. Returns the commit that reached the remote."""
    from versioning.registry import assign_production, register_champion

    branch = current_branch(root)
    push_outputs(root, dataset)
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        before = set(_git(root, "tag", "--list").stdout.split())
        commit = _git(root, "rev-parse", "HEAD").stdout.strip()
        if champion == "promoted":  # tags are made after the last rebase, on the commit that is pushed
            register_champion(root, dataset, commit, message, **tagger)
        elif champion == "restored":
            assign_production(root, dataset, commit, message, **tagger)
        tags = sorted(set(_git(root, "tag", "--list").stdout.split()) - before)
        pushed = _git(root, "push", "--atomic", "--porcelain", GIT_REMOTE, f"HEAD:refs/heads/{branch}",
                      *(f"refs/tags/{tag}" for tag in tags), check=False)
        if pushed.returncode == 0:
            _say("pushed %s and %d tag(s) to %s/%s", commit[:10], len(tags), GIT_REMOTE, branch)
            try:  # versioned on both remotes: the drops are no longer needed there
                if cleared := clear_fetched(root):
                    _say("shared inbox: %d drop(s) deleted from the DVC remote, now in this version", len(cleared))
            except Exception as error:  # the version stands; the next run finds these images ingested already
                _say("shared inbox: the drops this run took could not be deleted from the DVC remote (%s); the "
                     "next run takes them again and quarantines them as duplicates: delete them from %s",
                     " ".join(str(error).split()), drop_folder(root, dataset), level=logging.WARNING)
            return commit
        if tags:
            _git(root, "tag", "--delete", *tags)
        refused = " ".join((pushed.stderr + pushed.stdout).split())
        if "(fetch first)" not in refused and "(non-fast-forward)" not in refused:  # not a race: a hook, a refusal
            raise PipelineError(f"git push to {GIT_REMOTE}/{branch} failed: {refused}; the DVC remote holds the "
                                "outputs, the git remote nothing of this run")
        _say("%s/%s moved on (push %d of %d refused): rebasing", GIT_REMOTE, branch, attempt, PUSH_ATTEMPTS)
        _git(root, "fetch", "--quiet", "--tags", GIT_REMOTE, branch)
        rebase(root, dataset, f"{GIT_REMOTE}/{branch}", tagger or None)
    raise PipelineError(f"git push to {GIT_REMOTE}/{branch} refused {PUSH_ATTEMPTS} times (other runs kept pushing "
                        "first); the git remote holds nothing of this run")
