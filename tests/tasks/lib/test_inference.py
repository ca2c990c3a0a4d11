import json
import zipfile

import numpy as np
import pytest

from tasks.common.errors import TrainingError
from tasks.lib.inference import (DenseNetwork, UnsupportedModel, load_network, read_dense_network,
                             sparse_categorical_crossentropy)
from tasks.lib.outputs import load_split
from tasks.lib.predictions import load_model


def test_dense_network_matches_keras_on_real_test_images(trained_digits):
    images, labels = load_split(trained_digits.processed_file("test"))
    keras_model = load_model(trained_digits.model_file)

    network = load_network(trained_digits.model_file)
    probabilities = network.predict(images, batch_size=300)

    assert isinstance(network, DenseNetwork)
    expected = keras_model.predict(images, verbose=0)
    np.testing.assert_allclose(probabilities, expected, atol=2e-6)
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    keras_loss, keras_accuracy = keras_model.evaluate(images, labels, verbose=0)
    assert sparse_categorical_crossentropy(probabilities, labels) == pytest.approx(keras_loss, abs=1e-5)
    assert float(np.mean(probabilities.argmax(axis=1) == labels)) == pytest.approx(keras_accuracy, abs=1e-6)


def test_other_architectures_are_loaded_by_keras(tmp_path):
    import keras

    model = keras.Sequential([keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dropout(0.1),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "model.keras"
    model.save(path)

    with pytest.raises(UnsupportedModel, match="Dropout"):
        read_dense_network(path)
    loaded = load_network(path)
    assert isinstance(loaded, keras.Model)
    images = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize("loader", [load_network, load_model], ids=["load_network", "keras load_model"])
def test_lambda_layer_is_refused_by_safe_mode(tmp_path, loader):
    import keras

    model = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Lambda(lambda tensor: tensor * 2)])
    path = tmp_path / "model.keras"
    model.save(path)

    with pytest.raises(ValueError, match="Lambda"):
        loader(path)


def test_unknown_activation_is_not_guessed(trained_digits, tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(trained_digits.model_file) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                config["config"]["layers"][2]["config"]["activation"] = "gelu"
                data = json.dumps(config).encode()
            target.writestr(name, data)

    with pytest.raises(UnsupportedModel, match="activation 'gelu'"):
        read_dense_network(path)


def test_wrong_input_shape_is_a_clear_error(trained_digits):
    with pytest.raises(ValueError, match=r"expects inputs of shape \(n, 28, 28\), got \(2, 27, 28\)"):
        load_network(trained_digits.model_file).predict(np.zeros((2, 27, 28), np.float32))


@pytest.mark.parametrize("loader", [load_network, load_model], ids=["load_network", "keras load_model"])
def test_missing_model_is_a_clear_error(tmp_path, loader):
    with pytest.raises(TrainingError, match=r"model.keras: no model file; run the train stage first"):
        loader(tmp_path / "model.keras")


def test_weights_are_found_whatever_the_layers_are_called(tmp_path):
    """Keras stores weights by class name and position (dense, dense_1), not by layer name."""
    import keras

    model = keras.Sequential([keras.Input(shape=(28, 28)), keras.layers.Flatten(name="pixels"),
                              keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(8, activation="relu", name="dense_7"),
                              keras.layers.Dense(10, activation="softmax", name="dense")])
    path = tmp_path / "model.keras"
    model.save(path)
    images = np.random.default_rng(1).random((32, 28, 28), dtype=np.float32)

    network = read_dense_network(path)

    assert [layer.kernel.shape for layer in network.layers] == [(784, 16), (16, 8), (8, 10)]
    np.testing.assert_allclose(network.predict(images), model.predict(images, verbose=0), atol=2e-6)
