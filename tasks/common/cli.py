"""The command-line entry of every stage: `python -m tasks.<stage> <dataset> [--params params.yaml]`.

DVC runs these commands; they load params.yaml once (as the dataset's overrides file says:
DatasetPaths.overrides_file), build the dataset's paths and call the stage's function while holding the dataset's
pipeline lock (tasks/common/lock.py). A PipelineError ends the process with exit code 1 and its message, without a
traceback. Every stage ends with one line giving its duration and outcome (see tasks/common/timings.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.common.config import Params, load_params, load_run_params, write_overrides
from tasks.common.errors import PipelineError, StageInterrupted
from tasks.common.lock import pipeline_lock
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.common.timings import timed_stage

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_stage(stage: str, argv: list[str] | None, stage_function: Callable[[DatasetPaths, Params], Any]) -> int:
    """Parse the arguments, run `stage_function(paths, params)` and turn a PipelineError into exit code 1."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{stage}", description=f"Run the {stage} stage.")
    parser.add_argument("dataset", help="dataset name, a key under `data` in params.yaml")
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE), help="params file (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: current directory)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        params = load_params(arguments.params)  # a bad params.yaml, or an unknown dataset: nothing is written
        params.dataset(arguments.dataset)
        paths = DatasetPaths(arguments.root.resolve(), arguments.dataset)
        with pipeline_lock(paths.lock_file, f"stage {stage}"), timed_stage(paths, stage, "cli", _announce):
            # Read under the lock (a flow run of the dataset writes its overrides there holding it): `{}`, or what a
            # killed run left (dvc.lock then records it). A new dataset's file is made: DVC records it after us.
            write_overrides(paths, None, only_if_missing=True)
            stage_function(paths, load_run_params(arguments.params, paths))
    except StageInterrupted as error:
        print(f"{stage} interrupted for {arguments.dataset}: {error}", file=sys.stderr)
        return 130
    except PipelineError as error:
        print(f"{stage} failed for {arguments.dataset}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
