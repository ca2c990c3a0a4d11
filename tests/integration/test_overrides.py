"""Issue 28 item 3: a flow run's overrides never write params.yaml, so they reach no other run.

Two flow runs in one repository, as `make flow` runs them: mnist-sample with `--overrides '{"train.epochs": 8}'`
(a shared key), and `custom` without overrides, run to its end while the first is held (SIGSTOP) in its training.
Before, the first run wrote its overrides into params.yaml for its duration, and the second trained 8 epochs too
(docs/RELIABILITY.md listed it as a known gap). Real flow runs, real training (dense model), real DVC.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tasks.lib import idx
from tasks.lib.mnist_sample import build_mnist_sample
from tasks.lib.run_history import _train_params
from tests.integration.repo import VENV_BIN, copy_repository, run

pytestmark = pytest.mark.slow

DEFAULT_EPOCHS, OVERRIDDEN_EPOCHS = 2, 8  # with threshold 1.0 (below), which validation never reaches
OVERRIDES = {"train.epochs": OVERRIDDEN_EPOCHS}


def two_datasets(local_dir):
    def edit(document: dict) -> None:
        document["datasets"] = ["mnist-sample", "custom"]
        document["train"].update(model="dense", epochs=DEFAULT_EPOCHS)
        document["data"]["mnist-sample"].update(threshold=1.0, train={})  # every epoch runs: the count shows
        document["data"]["custom"].update(local_dir=str(local_dir), expected_counts={"train": 300, "test": 100},
                                          threshold=1.0, min_accuracy=0.0)
    return edit


def flow(repo, dataset, *arguments) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    environment.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                       PREFECT_HOME=str(repo.parent / f"prefect-home-{dataset}"))
    return subprocess.Popen([sys.executable, "-m", "flows.training", "--dataset", dataset, "--force", *arguments],
                            cwd=repo, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def epochs_trained(repo, dataset) -> int:
    history = (DatasetPaths(repo, dataset).training_history_file).read_text().strip().splitlines()
    return len(history) - 1  # a header, then a row per epoch


def test_an_override_reaches_its_own_run_only_and_params_yaml_never_changes(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    arrays = build_mnist_sample()
    for (split, kind), name in IDX_FILE_NAMES.items():
        subset = arrays[(split, kind)][: 300 if split == "train" else 100]
        (incoming / f"{name}.gz").write_bytes(gzip.compress(idx.encode_idx(subset)))
    repo = copy_repository(tmp_path / "repo", two_datasets(incoming))
    params_before = (repo / "params.yaml").read_bytes()
    overridden, other = DatasetPaths(repo, "mnist-sample"), DatasetPaths(repo, "custom")

    first = flow(repo, "mnist-sample", "--overrides", json.dumps(OVERRIDES))
    try:
        deadline = time.monotonic() + 300
        while not overridden.train_backup_dir.exists():  # its first epoch is over: it trains, overrides in force
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        try:
            assert (repo / "params.yaml").read_bytes() == params_before
            second = flow(repo, "custom")
            output = second.communicate(timeout=400)[0]
            assert second.returncode == 0, output[-3000:]
            assert first.poll() is None  # the first run was held, overrides in force, the whole time
        finally:
            first.send_signal(signal.SIGCONT)
        output = first.communicate(timeout=400)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output[-3000:]

    assert epochs_trained(repo, "custom") == DEFAULT_EPOCHS  # params.yaml's, not the other run's override
    assert epochs_trained(repo, "mnist-sample") == OVERRIDDEN_EPOCHS
    assert (repo / "params.yaml").read_bytes() == params_before
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    # dvc.lock records each run's own params: the override with the model it trained (`make history` reads it)
    assert _train_params(lock, "mnist-sample")["train.epochs"] == OVERRIDDEN_EPOCHS
    assert _train_params(lock, "custom")["train.epochs"] == DEFAULT_EPOCHS
    assert yaml.safe_load(overridden.overrides_file.read_text()) == {}  # the override lasted its run
    assert yaml.safe_load(other.overrides_file.read_text()) == {}
    # The next run of mnist-sample retrains with params.yaml: DVC sees the override gone.
    status = run(["dvc", "status", "train@mnist-sample"], repo).stdout
    assert "data/overrides/mnist-sample.yaml" in status, status
    assert "data/overrides" not in run(["dvc", "status", "train@custom"], repo).stdout
