"""tasks/lib/model_file.py: equal models give equal `.keras` and `.onnx` bytes, and Keras loads them as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from tasks.common.config import TrainParams
from tasks.lib.model_file import export_runtime_model, save_model
from tasks.train import build_model


def twin_models():
    """Two distinct trained model objects with the same weights and layer names, as two training processes make them
    (Python object ids differ between them)."""
    models = []
    for _ in range(2):
        keras.backend.clear_session()  # layer names restart at "dense", as in a new process
        keras.utils.set_random_seed(7)
        model = build_model(TrainParams(dense={"units": 8}, learning_rate=0.01))
        images = np.random.default_rng(1).random((16, 28, 28), dtype=np.float32)
        model.fit(images, np.arange(16) % 10, epochs=1, verbose=0)  # optimizer state is saved too
        models.append(model)
    return models


def test_equal_models_are_saved_as_equal_bytes_where_keras_alone_differs(tmp_path):
    first, second = twin_models()
    first.save(tmp_path / "keras-first.keras")
    second.save(tmp_path / "keras-second.keras")

    save_model(first, tmp_path / "first.keras")
    save_model(second, tmp_path / "second.keras")

    assert (tmp_path / "keras-first.keras").read_bytes() != (tmp_path / "keras-second.keras").read_bytes()
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()


def test_the_archive_keeps_keras_version_and_shared_objects_but_no_save_date(tmp_path):
    save_model(twin_models()[0], tmp_path / "model.keras")

    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        metadata = json.loads(archive.read("metadata.json"))
        config = archive.read("config.json").decode()
        times = {info.date_time for info in archive.infolist()}
    assert metadata == {"keras_version": keras.__version__}
    assert '"shared_object_id": 1' in config and '"shared_object_id": 2' not in config  # one shared dtype policy
    assert times == {(1980, 1, 1, 0, 0, 0)}


def test_keras_loads_the_rewritten_archive_in_safe_mode_with_the_same_predictions(tmp_path):
    model = twin_models()[0]
    save_model(model, tmp_path / "model.keras")
    images = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)

    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)

    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


def cnn_twins():
    """Two CNNs with the same weights, built as two training processes build them."""
    models = []
    for _ in range(2):
        keras.backend.clear_session()
        keras.utils.set_random_seed(7)
        model = build_model(TrainParams(model="cnn", cnn={"filters": (4,), "dense_units": 8}))
        model(np.zeros((1, 28, 28), np.float32))
        models.append(model)
    return models


def test_equal_models_are_exported_for_onnx_runtime_as_equal_bytes(tmp_path):
    first, second = cnn_twins()

    export_runtime_model(first, tmp_path / "first.onnx")
    export_runtime_model(second, tmp_path / "second.onnx")

    assert (tmp_path / "first.onnx").read_bytes() == (tmp_path / "second.onnx").read_bytes()
    graph = onnx.load(str(tmp_path / "first.onnx")).graph
    assert [value.name for value in graph.input] == ["images"]
    assert [value.name for value in graph.output] == ["probabilities"]


EXPORT_SCRIPT = """
import sys
from pathlib import Path
import keras, numpy as np
from tasks.common.config import TrainParams
from tasks.lib.model_file import export_runtime_model
from tasks.train import build_model
keras.utils.set_random_seed(7)
model = build_model(TrainParams(model="cnn", cnn={"filters": (4, 8), "dense_units": 8}))
model(np.zeros((1, 28, 28), np.float32))
export_runtime_model(model, Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_two_processes_export_the_same_weights_as_the_same_bytes(tmp_path):
    """tf2onnx names folded constants in a Python set's order, which changes with the process' hash seed: without
    `canonicalize_names`, these two files differ (seen: const_axes__9 against const_axes__12)."""
    files = []
    for seed in ("1", "2"):
        files.append(tmp_path / f"seed-{seed}.onnx")
        subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(files[-1])], check=True, cwd=Path(__file__).parents[3],
                       env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True)
    assert files[0].read_bytes() == files[1].read_bytes()


def test_the_export_prints_nothing_of_its_own_at_the_stages_log_level(tmp_path):
    """A training stage printed tf2onnx's FutureWarning and 5 INFO lines (its versions, opset, optimizer passes) with
    every model: the stage prints its own lines only. Run as the stage runs, with the root logger at INFO."""
    script = "import logging; logging.basicConfig(level=logging.INFO)\n" + EXPORT_SCRIPT
    exported = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.onnx")], cwd=Path(__file__).parents[3],
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
                              timeout=300)

    assert exported.returncode == 0, exported.stderr[-3000:]
    noise = [line for line in exported.stderr.splitlines() if "tf2onnx" in line or "Warning" in line]
    assert noise == [], noise
