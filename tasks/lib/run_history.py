"""The runs of a dataset, read from the commits the runs made (versioning/commits.py).

A deployment run that changed something commits dvc.lock and the dataset's reports with the message
`<dataset>: <what started it>: data <version>; <decision>`. Per commit: when, what started the run, the data version,
the promotion decision (from the message), the test accuracy (reports/<dataset>/metrics.json at that commit), the
model's hash (dvc.lock at that commit), and the training params that differ from today's params.yaml (dvc.lock
records each run's own, overrides included). Read by `make history` (versioning/history.py) and the report
page's run log (tasks/lib/run_log.py).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.common.paths import PARAMS_FILE, DatasetPaths


ROLLBACK_DECISION = "rolled back to "  # how a `make rollback` commit's decision starts (versioning/rollback.py)


@dataclass(frozen=True)
class RunRecord:
    commit: str
    when: str  # the commit's date, ISO 8601
    trigger: str
    data_version: str
    decision: str
    test_accuracy: float | None
    model_md5: str | None
    params_changed: dict


# A run's message is "; "-separated clauses; the commit holds the first ones in its subject, the rest in its body,
# a line each (versioning/commits.py).
CLAUSE_SEPARATOR = "; "


def read_history(root: Path, dataset: str) -> list[RunRecord]:
    """The dataset's runs, newest first: every commit whose message a run wrote for it."""
    paths = DatasetPaths(root, dataset)
    log = _git(root, "log", "--format=%H%x1f%cI%x1f%s%x1f%b%x1e", "--", "dvc.lock",
               str(paths.reports_dir.relative_to(root)))
    params_file = root / PARAMS_FILE
    current = _flatten(yaml.safe_load(params_file.read_text()) if params_file.exists() else {})
    records = []
    for entry in filter(None, (entry.strip("\n") for entry in log.split("\x1e"))):
        commit, when, subject, body = entry.split("\x1f")
        subject = CLAUSE_SEPARATOR.join([subject, *filter(None, body.splitlines())])
        prefix = f"{dataset}: "
        if not subject.startswith(prefix) or ": data " not in subject:
            continue
        trigger, _, rest = subject[len(prefix):].rpartition(": data ")
        version, _, decision = rest.partition("; ")
        lock = yaml.safe_load(_show(root, commit, "dvc.lock") or "{}") or {}
        metrics = json.loads(_show(root, commit, str(paths.metrics_file.relative_to(root))) or "{}")
        params = _train_params(lock, dataset)
        accuracy, model = metrics.get("test_accuracy"), model_md5(lock, dataset)
        if decision.startswith(ROLLBACK_DECISION):  # the model it made production, not the last one trained
            accuracy, model = _restored(root, commit, paths)
            restored = decision[len(ROLLBACK_DECISION):].split(" ", 1)[0]  # the commit whose champion came back
            params = _train_params(yaml.safe_load(_show(root, restored, "dvc.lock") or "{}") or {}, dataset) or params
        changed = {key: value for key, value in params.items() if current.get(key) != value}
        records.append(RunRecord(commit[:10], when, trigger, version, decision, accuracy, model, changed))
    return records


def _restored(root: Path, commit: str, paths: DatasetPaths) -> tuple[float | None, str | None]:
    """A rollback's champion: its accuracy and model md5, from the promotion.json the rollback wrote."""
    promotion = json.loads(_show(root, commit, str(paths.promotion_file.relative_to(root))) or "{}")
    gate: dict = next((gate for gate in promotion.get("gates", []) if gate.get("gate") == "rollback"), {})
    return promotion.get("challenger_accuracy"), gate.get("model_md5")


def _train_params(lock: dict, dataset: str) -> dict:
    """The params dvc.lock records for the dataset's train stage, as dotted keys: params.yaml's, with the flow run's
    overrides over them (its overrides file; DatasetPaths.overrides_file)."""
    recorded = ((lock.get("stages") or {}).get(f"train@{dataset}") or {}).get("params", {})
    overrides = recorded.get(DatasetPaths(Path(), dataset).overrides_file.as_posix(), {})
    return {**_flatten(recorded.get(PARAMS_FILE, {})), **_flatten(overrides or {})}


def _flatten(document, prefix: str = "") -> dict:
    """{"train": {"epochs": 5}} -> {"train.epochs": 5}; dvc.lock's keys are dotted already ("data.shoes.train")."""
    if not isinstance(document, dict):
        return {prefix: document}
    flat: dict = {}
    for key, value in document.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def model_md5(lock: dict, dataset: str) -> str | None:
    """The md5 a dvc.lock (parsed) records for the dataset's model.keras."""
    outs = ((lock.get("stages") or {}).get(f"train@{dataset}") or {}).get("outs", [])
    return next((out.get("md5") for out in outs if out.get("path", "").endswith("model.keras")), None)


def _git(root: Path, *arguments: str) -> str:
    """git's output; empty where `root` is no git checkout (a copy of the project without history)."""
    completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True)
    return completed.stdout if completed.returncode == 0 else ""


def _show(root: Path, commit: str, path: str) -> str | None:
    shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None
