"""DVC experiments as the sweep runs them: one `dvc exp run --temp` per trial, and what a trial committed.

`dvc exp run --temp` trains in its own temporary copy of the repository (under .dvc/tmp/exps) and saves the
result as a named experiment under git's refs/exps/. DVC takes its repository lock only to queue and to collect
a trial; `--wait-for-lock` makes concurrent trials wait for each other there instead of failing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TIMEOUT_SECONDS = 3600
VENV_BIN = Path(sys.executable).parent


def dvc(arguments: list[str], root: Path) -> subprocess.CompletedProcess:
    """`dvc --wait-for-lock <arguments>` in `root`, with this environment's dvc first on PATH."""
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["dvc", "--wait-for-lock", *arguments], cwd=root, env=environment, capture_output=True,
                          text=True, timeout=TIMEOUT_SECONDS)


def dvc_error(completed: subprocess.CompletedProcess) -> str:
    """DVC's own ERROR line (its last lines are a support link), else the last line of output."""
    lines = [line.strip() for line in (completed.stderr + completed.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"exit code {completed.returncode}, no output"])[-1]


def run_experiment(root: Path, name: str, params: dict[str, Any], target: str) -> str | None:
    """Run `target` (a DVC stage, e.g. train@mnist-sample) as the experiment `name` with the dotted `params`
    set; None when it succeeded, else DVC's error line."""
    settings = [f"++{key}={json.dumps(value)}" for key, value in params.items()]
    completed = dvc(["exp", "run", "--temp", "--name", name,
                     *[part for setting in settings for part in ("--set-param", setting)], target], root)
    return None if completed.returncode == 0 else dvc_error(completed)


def experiment_json(root: Path, name: str, path: Path) -> dict:
    """A git-tracked JSON file as the experiment `name` committed it; LookupError unless exactly one experiment
    has that name."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], cwd=root, check=True,
                          capture_output=True, text=True).stdout.split()
    matching = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    if len(matching) != 1:
        raise LookupError(f"dvc exp run finished, but git has {len(matching)} experiment refs named {name!r} "
                          f"(expected 1): {matching}")
    (ref,) = matching
    shown = subprocess.run(["git", "show", f"{ref}:{path.relative_to(root).as_posix()}"], cwd=root, check=True,
                           capture_output=True, text=True)
    return json.loads(shown.stdout)


def reproduce(root: Path, target: str) -> str | None:
    """`dvc repro <target>` in the workspace; None when it succeeded, else DVC's standard error."""
    completed = dvc(["repro", target], root)
    return None if completed.returncode == 0 else completed.stderr.strip()
