"""A 4-trial sweep on mnist-sample: on a local Dask cluster with 2 workers vs the same four trials one after another.

    python -m benchmarks.sweep_bench            # prints both wall times and `dvc exp show` for the trials

Both runs use the `sweep` flow (`python -m flows.sweep`) in one scratch copy of the repository whose data is
already prepared; DVC's run-cache is emptied before each so that every trial really trains (otherwise the
second run would restore the first run's identical results). Each figure is the wall time of the whole flow
process (Prefect's temporary server and the Dask cluster included) and of the trials alone. Runs alternate
(parallel, sequential, ...) `SWEEP_BENCH_ROUNDS` times (default 1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import copy_workspace, machine_details, run_timed

DATASET = "mnist-sample"
GRID = {"cnn.dense_units": [64, 256], "learning_rate": [0.001, 0.003]}  # mnist-sample trains the CNN
WORKERS = 2
ROUNDS = int(os.environ.get("SWEEP_BENCH_ROUNDS", "1"))


def run_sweep(workspace: Path, prefix: str, sequential: bool) -> dict:
    shutil.rmtree(workspace / ".dvc" / "cache" / "runs", ignore_errors=True)
    command = [sys.executable, "-m", "flows.sweep", "--dataset", DATASET, "--grid", json.dumps(GRID),
               "--workers", str(WORKERS), "--name-prefix", prefix, *(["--sequential"] if sequential else [])]
    timed = run_timed(command, workspace, {"PREFECT_HOME": str(workspace / ".prefect")})
    trials_seconds = float(re.search(r"(\d+) trials in ([\d.]+) s", timed.stdout).group(2))
    rows = [json.loads(line) for line in timed.stdout.splitlines() if line.startswith("{")]
    return {"mode": "sequential" if sequential else f"dask, {WORKERS} workers", "process_seconds": timed.seconds,
            "trials_seconds": trials_seconds, "rows": rows}


def shown_experiments(workspace: Path) -> dict[str, dict]:
    """What `dvc exp show --json` lists: each experiment's swept params and validation accuracy."""
    shown = {}
    for baseline in json.loads(run_timed(["dvc", "exp", "show", "--json"], workspace).stdout):
        for experiment in baseline.get("experiments") or []:
            data = experiment["revs"][0]["data"]
            train = data["params"]["params.yaml"]["data"]["data"][DATASET]["train"]
            metrics = data["metrics"][f"reports/{DATASET}/training_metrics.json"]["data"]
            shown[experiment["name"]] = {**{key: train.get(key) for key in GRID},
                                         "val_accuracy": round(metrics["val_accuracy"], 4)}
    return shown


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as scratch:
        workspace = copy_workspace(Path(scratch), [DATASET])
        run_timed(["dvc", "repro", f"train@{DATASET}"], workspace)  # the baseline the trials branch from
        run_timed(["git", "add", "-A"], workspace)
        run_timed(["git", "commit", "-qm", "baseline"], workspace)
        print(f"machine: {machine_details()}; grid {GRID} = 4 trials on {DATASET}", flush=True)
        results = []
        for round_number in range(1, ROUNDS + 1):
            for sequential in (False, True):
                prefix = f"r{round_number}-{'seq' if sequential else 'dask'}"
                results.append(run_sweep(workspace, prefix, sequential))
                result = results[-1]
                print(f"{result['mode']:>18}: {result['process_seconds']:6.1f} s whole flow, "
                      f"{result['trials_seconds']:6.1f} s for the 4 trials; best {result['rows'][0]['experiment']} "
                      f"(validation accuracy {result['rows'][0]['val_accuracy']}); seconds per trial: "
                      f"{[row['seconds'] for row in result['rows']]}", flush=True)
        print("dvc exp show --json, per experiment:")
        for name, trial in shown_experiments(workspace).items():
            print(f"  {name}: {trial}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
