"""Train, save, evaluate under faults: a killed training run resumes, a crash while saving keeps the previous
model, a diverging run promotes nothing, unsafe model and array files are refused, a missing class is reported."""

from __future__ import annotations

import ast
import json
import logging
import re
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks.common.architectures import ARCHITECTURES
from tasks.common.config import ConfigError, parse_params
from tasks.common.errors import ArrayFileError, TrainingError
from tasks.evaluate import evaluate_model
from tasks.promote import promote_model
from tasks.lib.outputs import load_split, save_split
from tasks.lib.inference import load_network
from tasks.lib.predictions import load_model, load_predictions
from tests.code_deps import PROJECT_PACKAGES
from tests.conftest import PROJECT_ROOT, project_params_document
from tests.reliability.conftest import custom_params, run_pipeline_from_validate, snapshot

EPOCHS, KILLED_AT = 6, 3
# Runs train_model in its own process with one extra Keras callback that SIGKILLs that process at the end
# of epoch KILLED_AT (after the pipeline's own callbacks, so after that epoch's backup): a real `kill -9`
# at a known epoch, which a test cannot time from outside on epochs this short.
KILL_AT_EPOCH = """
import os, signal, sys
from pathlib import Path
import keras
from tasks.common.config import load_params
from tasks.common.paths import DatasetPaths
from tasks.train import train_model

class KillAtEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

root = Path(sys.argv[1])
train_model(DatasetPaths(root, "custom"), load_params(root / "params.yaml").train_for("custom"), [KillAtEpoch()])
"""
# Runs train_model in its own process with Keras' Model.save (or Model.export) replaced by one that writes half the
# file and then SIGKILLs the process: a crash in the middle of writing the model, at a moment no test could time.
CRASH_WHILE_SAVING = """
import os, signal, sys
from pathlib import Path
import keras
from tasks.common.config import load_params
from tasks.common.paths import DatasetPaths
from tasks.train import train_model

method = sys.argv[2]  # "save" (model.keras) or "export" (model.onnx, written after it)
write = getattr(keras.Model, method)

def write_half_then_die(self, filepath, *args, **kwargs):
    write(self, filepath, *args, **kwargs)
    os.truncate(filepath, os.path.getsize(filepath) // 2)
    os.kill(os.getpid(), signal.SIGKILL)

setattr(keras.Model, method, write_half_then_die)
root = Path(sys.argv[1])
train_model(DatasetPaths(root, "custom"), load_params(root / "params.yaml").train_for("custom"))
"""


# `python -m tasks.train custom` with Ctrl-C (SIGINT) sent to itself at the end of epoch KILLED_AT, right after
# the pipeline's epoch recorder wrote that epoch and before its backup: as a user's Ctrl-C lands mid-training.
CTRL_C_AT_EPOCH = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if the tests run in the background
from tasks.lib import callbacks

recorded = callbacks.EpochRecorder.on_epoch_end

def then_ctrl_c(self, epoch, logs=None):
    recorded(self, epoch, logs)
    if epoch + 1 == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGINT)

callbacks.EpochRecorder.on_epoch_end = then_ctrl_c
from tasks.train import main
raise SystemExit(main(["custom"]))
"""


def write_params(root: Path, **train) -> None:
    document = project_params_document()
    document["datasets"] = ["custom"]
    document["data"]["custom"].update(threshold=1.0, min_accuracy=0.0)
    document["train"].update({"batch_size": 16, **train})
    (root / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def python(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})


@pytest.fixture
def stage_here(capfd, caplog):
    """`python -m tasks.<stage> custom` run in this process, where no process boundary is under test (a rerun after
    the kill or the Ctrl-C, which do run in a process of their own): it saves a TensorFlow start-up per call. Gives
    what the subprocess would: the exit code, stdout, and stderr (the stage's log lines are caught here, the root
    logger being pytest's)."""
    import importlib

    def run_stage(stage: str, root: Path) -> subprocess.CompletedProcess:
        capfd.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            code = importlib.import_module(f"tasks.{stage}").main(["custom", "--root", str(root),
                                                                   "--params", str(root / "params.yaml")])
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess([stage], code, out, err + caplog.text)

    return run_stage


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_killed_training_resumes_from_the_epoch_it_reached(good_root, architecture, stage_here):
    write_params(good_root.root, epochs=EPOCHS, model=architecture)
    model_before = good_root.model_file.read_bytes()
    runtime_model_before = good_root.runtime_model_file.read_bytes()

    killed = python("-c", KILL_AT_EPOCH, str(good_root.root), str(KILLED_AT), cwd=good_root.root)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert good_root.model_file.read_bytes() == model_before  # the last good model is untouched
    assert good_root.runtime_model_file.read_bytes() == runtime_model_before
    backup = good_root.train_backup_dir
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == KILLED_AT
    epochs_before_kill = [json.loads(line) for line in (backup / "history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in epochs_before_kill] == [1, 2, 3]

    rerun = stage_here("train", good_root.root)

    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming an interrupted training run after epoch {KILLED_AT}" in rerun.stderr
    assert f"Epoch {KILLED_AT + 1}/{EPOCHS}" in rerun.stdout and "Epoch 1/" not in rerun.stdout
    summary = json.loads(good_root.training_summary_file.read_text())
    assert summary["stop_epoch"] == EPOCHS and not summary["stopped_by_threshold"]
    rows = good_root.training_history_file.read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, EPOCHS + 1))
    assert [float(row.split(",")[1]) for row in rows[:KILLED_AT]] == pytest.approx(
        [record["loss"] for record in epochs_before_kill], abs=1e-6)
    assert not backup.exists()  # a finished run leaves no backup behind
    assert summary["params"]["model"] == architecture
    load_model(good_root.model_file)
    load_network(good_root.runtime_model_file)


def test_the_train_stage_prints_no_tensorflow_start_up_noise(good_root):
    """Issue 16: run as `dvc repro` runs it, without the Makefile's TF_CPP_MIN_LOG_LEVEL, the train stage printed
    TensorFlow's start-up lines twice (oneDNN, CUDA drivers) and an E-level `failed call to cuInit` on this GPU-less
    machine. The stage's own lines remain, once."""
    write_params(good_root.root, epochs=1)
    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}

    trained = subprocess.run([sys.executable, "-m", "tasks.train", "custom"], cwd=good_root.root, capture_output=True,
                             text=True, timeout=300, env={**environment, "PYTHONPATH": str(PROJECT_ROOT)})

    assert trained.returncode == 0, trained.stderr
    for noise in ("cuInit", "oneDNN custom operations", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard"):
        assert noise not in trained.stderr, trained.stderr
    assert trained.stderr.count("custom: cnn on CPU stopped at epoch 1") + \
        trained.stderr.count("custom: dense on CPU stopped at epoch 1") == 1, trained.stderr


def test_ctrl_c_during_training_is_one_line_saying_where_a_rerun_resumes(good_root, stage_here):
    write_params(good_root.root, epochs=EPOCHS)
    model_before = good_root.model_file.read_bytes()

    interrupted = python("-c", CTRL_C_AT_EPOCH, str(KILLED_AT), cwd=good_root.root)

    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert "Traceback" not in interrupted.stderr and "KeyboardInterrupt" not in interrupted.stderr
    (line,) = [line for line in interrupted.stderr.splitlines() if line.startswith("train interrupted for custom: ")]
    assert line == (f"train interrupted for custom: custom: training interrupted (Ctrl-C); a rerun resumes after "
                    f"epoch {KILLED_AT - 1}; {good_root.model_file} was not changed")
    assert good_root.model_file.read_bytes() == model_before
    rerun = stage_here("train", good_root.root)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming an interrupted training run after epoch {KILLED_AT - 1}" in rerun.stderr


def test_backup_of_other_params_is_not_resumed_and_says_why(good_root, stage_here):
    write_params(good_root.root, epochs=EPOCHS)
    killed = python("-c", KILL_AT_EPOCH, str(good_root.root), str(KILLED_AT), cwd=good_root.root)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    write_params(good_root.root, epochs=EPOCHS, cnn={"dense_units": 64})

    rerun = stage_here("train", good_root.root)

    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" not in rerun.stderr and f"Epoch 1/{EPOCHS}" in rerun.stdout
    assert (f"the backup of an interrupted training run in {good_root.train_backup_dir} is not resumed: the training "
            "params differ (cnn); training starts at epoch 1") in rerun.stderr


def test_a_rerun_resumes_after_normalize_rewrote_the_same_training_data(good_root, stage_here):
    """Issue 27 item 3: the flow reruns normalize before train, which rewrites train.npz with the same arrays; the
    backup was dropped (its check held the file's modification time) and training started again at epoch 1."""
    write_params(good_root.root, epochs=EPOCHS)
    interrupted = python("-c", CTRL_C_AT_EPOCH, str(KILLED_AT), cwd=good_root.root)
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    train_file = good_root.processed_file("train")
    before = train_file.stat().st_mtime_ns

    normalized = stage_here("normalize", good_root.root)
    assert normalized.returncode == 0, normalized.stderr
    assert train_file.stat().st_mtime_ns != before  # rewritten
    rerun = stage_here("train", good_root.root)

    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming an interrupted training run after epoch {KILLED_AT - 1}" in rerun.stderr
    assert f"Epoch {KILLED_AT}/{EPOCHS}" in rerun.stdout and "Epoch 1/" not in rerun.stdout


def test_a_backup_of_other_training_data_is_not_resumed_and_says_why(good_root, stage_here):
    import numpy as np

    from tasks.lib.outputs import load_split

    write_params(good_root.root, epochs=EPOCHS)
    interrupted = python("-c", CTRL_C_AT_EPOCH, str(KILLED_AT), cwd=good_root.root)
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    images, labels = load_split(good_root.processed_file("train"))
    np.savez(good_root.processed_file("train"), images=images[::-1], labels=labels[::-1])  # the same images, reordered

    rerun = stage_here("train", good_root.root)

    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" not in rerun.stderr and f"Epoch 1/{EPOCHS}" in rerun.stdout
    assert "is not resumed: the training data differ (train.npz holds other images or labels)" in rerun.stderr


@pytest.mark.parametrize("method", ["save", "export"], ids=["writing model.keras", "writing model.onnx"])
def test_crash_while_saving_keeps_the_previous_model(good_root, method):
    """Both files stay as they were, also when model.keras was complete and the crash came while exporting."""
    write_params(good_root.root, epochs=1)
    temporary = "models/custom/.model."  # atomic_path's temporary files, left behind by a kill -9
    before = snapshot(good_root.root, ignore=("params.yaml",))

    crashed = python("-c", CRASH_WHILE_SAVING, str(good_root.root), method, cwd=good_root.root)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert snapshot(good_root.root, ignore=("params.yaml", temporary)) == before
    load_model(good_root.model_file).predict(np.zeros((1, 28, 28), dtype=np.float32), verbose=0)
    load_network(good_root.runtime_model_file).predict(np.zeros((1, 28, 28), dtype=np.float32))


# Validate, drift and normalize ran again, successfully, before training diverged (Data Docs carry a run time; the
# drift check now had a champion to compare with).
REWRITTEN_BY_THE_STAGES_BEFORE = ("reports/custom/data_docs", "reports/custom/drift.json")


def test_diverging_training_stops_and_nothing_is_promoted(good_root):
    """params.yaml caps train.learning_rate at 10 (next test); Adam never diverges to NaN below that on this
    model, so the cap is bypassed here (model_copy skips validation) to reach the guard behind it."""
    params = custom_params()
    # 1e30 made the dense model and the 64-unit CNN diverge to NaN; the 128-unit CNN stayed finite (loss 1e30):
    # 1e38, near float32's largest number, overflows every architecture.
    diverging = params.train_for("custom").model_copy(update={"learning_rate": 1e38, "epochs": 3})
    before = snapshot(good_root.root)

    with pytest.raises(TrainingError) as raised:
        run_pipeline_from_validate(good_root, params, train_params=diverging)

    message = str(raised.value)
    assert message.startswith("custom: training diverged at epoch 1")
    assert re.search(r"'loss': (nan|inf)", message) and "lower train.learning_rate (now 1e+38); no model was written" in message
    assert snapshot(good_root.root, ignore=REWRITTEN_BY_THE_STAGES_BEFORE) == {
        path: digest for path, digest in before.items() if not path.startswith(REWRITTEN_BY_THE_STAGES_BEFORE)}


def test_absurd_learning_rate_is_refused_by_the_config():
    document = project_params_document()
    document["train"]["learning_rate"] = 1000

    with pytest.raises(ConfigError, match=r"train.learning_rate: Input should be less than or equal to 10"):
        parse_params(document)


def test_a_champion_with_a_lambda_layer_is_refused(good_root):
    """Evaluate and predict run `model.onnx`, which holds no code. Keras loads a `.keras` file only for a champion
    promoted before models were exported for ONNX Runtime, when the test set changed: in safe mode, which refuses
    the Python code a Lambda layer carries."""
    import keras

    keras.Sequential([keras.Input(shape=(28, 28)), keras.layers.Flatten(),
                      keras.layers.Lambda(lambda tensor: tensor * 2)]).save(good_root.production_model_file)
    good_root.production_runtime_model_file.unlink()  # promoted before the ONNX export existed
    good_root.production_predictions_file.unlink()  # as when the test set changed: the champion is re-scored
    before = snapshot(good_root.root)
    params = custom_params()

    with pytest.raises(ValueError, match="Lambda"):
        promote_model(good_root, params.dataset("custom"), params.promote)

    assert snapshot(good_root.root) == before


def test_every_np_load_in_the_code_refuses_pickle():
    calls = []
    modules = [module for package in PROJECT_PACKAGES for module in sorted((PROJECT_ROOT / package).rglob("*.py"))]
    assert len(modules) > 40  # every package's modules, subpackages included
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                keywords = {keyword.arg: ast.unparse(keyword.value) for keyword in node.keywords}
                calls.append((module.name, keywords.get("allow_pickle")))
    assert calls == [("fileio.py", "False")]  # one loader, tasks.common.fileio.load_arrays, used everywhere


@pytest.mark.parametrize("reader", [load_split, lambda path: load_predictions(path, "any")], ids=["split", "predictions"])
def test_pickled_or_damaged_array_files_are_refused_naming_the_file(tmp_path, reader):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, images=np.array([object()], dtype=object), labels=np.zeros(1, dtype=np.uint8),
             predicted=np.array([object()], dtype=object), test_set_sha256=np.array("any"))
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(pickled.read_bytes()[:100])

    with pytest.raises(ArrayFileError, match="Object arrays cannot be loaded when allow_pickle=False") as raised:
        reader(pickled)
    assert str(raised.value).startswith(f"{pickled}: cannot read arrays")
    with pytest.raises(ArrayFileError) as raised:
        reader(damaged)
    assert str(raised.value).startswith(f"{damaged}: cannot read arrays")


def test_test_split_missing_a_class_still_gives_a_ten_by_ten_report(good_root):
    images, labels = load_split(good_root.processed_file("test"))
    keep = labels != 3
    save_split(good_root.processed_file("test"), images[keep], labels[keep])
    params = custom_params()

    result = evaluate_model(good_root, params.dataset("custom"))

    scores = json.loads(good_root.class_scores_file.read_text())
    assert np.array(scores["confusion_matrix"]).shape == (10, 10)
    assert sum(scores["confusion_matrix"][3]) == 0
    assert list(scores["per_class"]) == [str(digit) for digit in range(10)]
    assert scores["per_class"]["3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result.class_scores.confusion_matrix == scores["confusion_matrix"]
