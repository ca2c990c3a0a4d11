"""tasks/lib/model_file.py: equal models give equal `.keras` bytes, and Keras loads them as before."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np

from tasks.common.config import TrainParams
from tasks.lib.model_file import save_model
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
