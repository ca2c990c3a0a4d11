"""Train one dataset with the pipeline's own functions and default params; print one JSON line.

    python benchmarks/train_probe.py ROOT [DATASET]
ROOT is a repository root whose data/processed/<dataset>/ is ready (make bench prepares one). Like every probe, it
never reads the test split (tests/benchmarks/test_probes.py): `make bench` scores the model it leaves with the
evaluate stage.
"""

import json
import sys
import time
from pathlib import Path

started = time.perf_counter()
from tasks.lib.startup import import_large  # noqa: E402

import_large("keras", freeze=True)  # as `python -m tasks.train` imports it (tasks/lib/startup.py)
from tasks.common.config import load_params  # noqa: E402
from tasks.common.paths import PARAMS_FILE, DatasetPaths  # noqa: E402
from tasks.train import train_model  # noqa: E402

if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve()
    dataset = sys.argv[2] if len(sys.argv) > 2 else "fashion-mnist"
    params = load_params(root / PARAMS_FILE)
    paths = DatasetPaths(root, dataset)
    training = train_model(paths, params.train_for(dataset))
    print(json.dumps({"train_seconds": training.train_seconds, "stop_epoch": training.summary.stop_epoch,
                      "val_accuracy": training.summary.final_metrics["val_accuracy"],
                      "batch_size": params.train_for(dataset).batch_size,
                      "process_seconds": time.perf_counter() - started}))
