"""Make a throwaway copy of this repository (a real git + DVC repo) and run its commands there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent


def copy_repository(destination: Path, edit_params) -> Path:
    """Copy the files git would clone (committed or not, minus ignored ones) and apply `edit_params(document)`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = PROJECT_ROOT / relative
        if source.is_symlink():  # data/sources/<dataset>: a link to the dataset's local_dir, kept a link
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(source), destination / relative)
        elif source.is_file():
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / relative)
    params_file = destination / "params.yaml"
    document = yaml.safe_load(params_file.read_text())
    edit_params(document)
    params_file.write_text(yaml.safe_dump(document, sort_keys=False))
    _drop_unlisted_from_lock(destination / "dvc.lock", document["datasets"])
    run(["git", "init", "-q"], destination)
    # A local identity, so commits (ours and `dvc exp run`'s) work on machines without a global one.
    run(["git", "config", "user.name", "pipeline tests"], destination)
    run(["git", "config", "user.email", "tests@example.com"], destination)
    run(["git", "add", "-A"], destination)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "copy"], destination)
    return destination


def _drop_unlisted_from_lock(lock_file: Path, datasets: list[str]) -> None:
    """Keep in dvc.lock only the stages dvc.yaml still has once params.yaml lists `datasets` (DVC keeps the others'
    entries, unread). DVC parses and rewrites the whole file after every stage it runs or commits (a round-trip YAML
    load and dump, about 1.3 s for the project's 1,600 lines on 2 busy cores): a copy that builds one dataset writes
    a lock of its own size."""
    if not lock_file.exists():
        return
    document = yaml.safe_load(lock_file.read_text())
    stages = document.get("stages", {})
    kept = {name: entry for name, entry in stages.items() if "@" not in name or name.split("@", 1)[1] in datasets}
    if len(kept) < len(stages):
        document["stages"] = kept
        lock_file.write_text(yaml.safe_dump(document, sort_keys=False))


# Served tests train mnist-sample's CNN for a few epochs instead of the ~17 its threshold takes: the model's quality
# is not what they test (issue 28: tests within their budget). Chosen on validation: 0.955 validation accuracy at
# epoch 3 in their runs' logs; the promotion gate (test accuracy at least 0.90) then reports 0.928-0.945 there.
SERVED_EPOCHS = 3


def mnist_sample_only(document: dict) -> None:
    """An `edit_params` for `copy_repository`: build mnist-sample only, for SERVED_EPOCHS epochs."""
    document["datasets"] = ["mnist-sample"]
    document["data"]["mnist-sample"]["train"]["epochs"] = SERVED_EPOCHS


def build_custom_only(local_dir: Path, train_count: int, test_count: int, epochs: int, **dataset_settings):
    """An `edit_params` for `copy_repository`: build only the `custom` dataset from the IDX files in `local_dir`,
    training for at most `epochs` epochs; `dataset_settings` go to `data.custom` (threshold, min_accuracy...)."""

    def edit(document: dict) -> None:
        document["datasets"] = ["custom"]
        document["data"]["custom"].update(local_dir=str(local_dir),
                                          expected_counts={"train": train_count, "test": test_count},
                                          **dataset_settings)
        document["train"]["epochs"] = epochs

    return edit


def run(command: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command with the project's virtualenv first on PATH (and `env` added); on failure show its output."""
    environment = {**os.environ, **(env or {}), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    if check and completed.returncode != 0:
        raise AssertionError(f"{command} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")
    return completed
