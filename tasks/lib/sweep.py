"""Sweep trials: which params each trial sets, checked before anything runs, and how trials rank.

A trial is a few overrides of one dataset's training settings, e.g. `{"dense.units": 64, "learning_rate": 0.001}`:
the architecture (`model`), its settings (`<architecture>.<setting>`) and the shared ones.
They are set under `data.<dataset>` (where they win over the top-level `train` section), the way
`dvc exp run -S` writes them, so the experiment's params.yaml says exactly what the trial trained with.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.common.architectures import ARCHITECTURES
from tasks.common.config import check_read_by_the_run, parse_params, set_dotted
from tasks.common.errors import ConfigError

# What a sweep may vary, and where params.yaml keeps it for one dataset: the architecture, each architecture's
# settings (tasks/common/architectures.py) and the shared ones.
SWEEP_KEYS = {
    "model": "data.{dataset}.train.model",
    **{f"{name}.{setting}": f"data.{{dataset}}.train.{name}.{setting}"
       for name, architecture in ARCHITECTURES.items() for setting in architecture.settings.model_fields},
    "batch_size": "data.{dataset}.train.batch_size",
    "learning_rate": "data.{dataset}.train.learning_rate",
    "epochs": "data.{dataset}.train.epochs",
    "threshold": "data.{dataset}.threshold",
}


@dataclass(frozen=True)
class TrialResult:
    name: str
    overrides: dict[str, Any]
    val_accuracy: float | None = None
    val_loss: float | None = None
    stop_epoch: int | None = None
    seconds: float = 0.0
    error: str | None = None


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values: {"dense.units": [64, 128], "learning_rate": [0.001]} -> 2 trials."""
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"sweep grid {key!r}: expected a non-empty list of values, found {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combination)) for combination in itertools.product(*(grid[key] for key in keys))]


def check_trials(document: dict, dataset: str, trials: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate every trial against params.yaml's rules before any trial runs; return them as plain dicts.

    `document` is the parsed params.yaml (not modified). Raises ConfigError naming the trial, key and value.
    """
    if not trials:
        raise ConfigError("sweep: no trials (give a grid or a list of trials)")
    checked = []
    for number, trial in enumerate(trials, start=1):
        unknown = sorted(set(trial) - set(SWEEP_KEYS))
        if unknown:
            raise ConfigError(f"sweep trial {number} {dict(trial)}: unknown key(s) {unknown}; "
                              f"a sweep may vary {sorted(SWEEP_KEYS)}")
        mappings = sorted(key for key, value in trial.items() if isinstance(value, Mapping))
        if mappings:  # `dvc exp run -S` takes one value per key
            raise ConfigError(f"sweep trial {number} {dict(trial)}: {mappings} hold a mapping; a trial sets one value "
                              "per key (a threshold for the trial's architecture, say, not one per architecture)")
        candidate = copy.deepcopy(document)
        for dotted_key, value in param_overrides(dataset, trial).items():
            set_dotted(candidate, dotted_key, value)
        source = f"sweep trial {number} {dict(trial)}"
        check_read_by_the_run(parse_params(candidate, source), dataset, param_overrides(dataset, trial), source)
        checked.append(dict(trial))
    return checked


def param_overrides(dataset: str, trial: Mapping[str, Any]) -> dict[str, Any]:
    """The trial as dotted params.yaml keys: {"dense.units": 64} -> {"data.mnist-sample.train.dense.units": 64}."""
    return {SWEEP_KEYS[key].format(dataset=dataset): value for key, value in trial.items()}


def rank_trials(results: Sequence[TrialResult]) -> list[TrialResult]:
    """Best first: highest validation accuracy, then lowest validation loss (the test split chooses nothing);
    failed trials last, in their order."""
    finished = [result for result in results if result.error is None]
    failed = [result for result in results if result.error is not None]
    return sorted(finished, key=lambda result: (-(result.val_accuracy or 0.0), result.val_loss or 0.0)) + failed


def ranking_table(ranked: Sequence[TrialResult]) -> list[dict[str, Any]]:
    """One row per trial for a table artifact, best first."""
    keys = sorted({key for result in ranked for key in result.overrides})
    return [{"rank": position if result.error is None else "-", "experiment": result.name,
             **{key: result.overrides.get(key, "") for key in keys},
             "val_accuracy": "" if result.val_accuracy is None else round(result.val_accuracy, 4),
             "val_loss": "" if result.val_loss is None else round(result.val_loss, 4),
             "stop_epoch": "" if result.stop_epoch is None else result.stop_epoch,
             "seconds": round(result.seconds, 1), "error": result.error or ""}
            for position, result in enumerate(ranked, start=1)]
