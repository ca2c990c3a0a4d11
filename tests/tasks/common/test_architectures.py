"""tasks/common/architectures.py: every architecture builds, trains on real digits, has one output per class, and
its saved file loads in Keras' safe mode with the same predictions and the same bytes for the same weights. A new
architecture added to ARCHITECTURES is covered by these tests as it is."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tasks.common.architectures import ARCHITECTURES
from tasks.common.config import TrainParams
from tasks.lib.mnist_sample import build_mnist_sample
from tasks.lib.model_file import save_model
from tasks.train import build_model


@pytest.fixture(scope="module")
def digits():
    arrays = build_mnist_sample()
    return (arrays[("train", "images")][:512].astype(np.float32) / 255, arrays[("train", "labels")][:512],
            arrays[("test", "images")][:200].astype(np.float32) / 255, arrays[("test", "labels")][:200])


def trained(name: str, digits, epochs: int = 3, images: int = 512):
    keras.backend.clear_session()  # layer names restart, as in a new process
    keras.utils.set_random_seed(3)
    train_images, train_labels, _, _ = digits
    model = build_model(TrainParams(model=name, learning_rate=0.003))
    model.fit(train_images[:images], train_labels[:images], epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_architecture_learns_digits_with_one_output_per_class(name, digits):
    _, _, test_images, test_labels = digits
    model = trained(name, digits)

    probabilities = model.predict(test_images, verbose=0)

    assert probabilities.shape == (200, 10)
    assert np.mean(probabilities.argmax(axis=1) == test_labels) > 0.6  # chance is 0.1
    assert build_model(TrainParams(model=name, num_classes=3)).output_shape == (None, 3)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_architecture_saves_equal_bytes_for_equal_weights_and_loads_in_safe_mode(name, digits, tmp_path):
    _, _, test_images, _ = digits
    first, second = trained(name, digits, epochs=1, images=128), trained(name, digits, epochs=1, images=128)
    save_model(first, tmp_path / "first.keras")
    save_model(second, tmp_path / "second.keras")

    loaded = keras.saving.load_model(tmp_path / "first.keras", safe_mode=True)

    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    np.testing.assert_allclose(loaded.predict(test_images, verbose=0), first.predict(test_images, verbose=0),
                               rtol=0, atol=1e-6)


def test_the_cnn_is_convolutional_and_the_dense_model_is_the_lectures():
    cnn = build_model(TrainParams(model="cnn", cnn={"filters": [8, 16], "dense_units": 32}))
    dense = build_model(TrainParams(model="dense", dense={"units": 64}))

    assert [layer.filters for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)] == [8, 16]
    assert [type(layer).__name__ for layer in dense.layers] == ["Flatten", "Dense", "Dense"]
    assert dense.layers[1].units == 64
