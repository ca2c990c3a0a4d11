import numpy as np
import pytest

from tasks.common.architectures import ARCHITECTURES, CnnSettings
from tasks.common.errors import ModelFileError, TrainingError
from tasks.lib.inference import RuntimeModel, load_network, sparse_categorical_crossentropy
from tasks.lib.model_file import export_runtime_model
from tasks.lib.outputs import load_split
from tasks.lib.predictions import load_model

# Small settings so that each architecture builds and exports in a second; the defaults work the same way.
SMALL_SETTINGS = {"dense": {"units": 16}, "cnn": {"filters": (4, 8), "dense_units": 16}}


def test_the_runtime_gives_keras_results_on_real_test_images(trained_digits):
    images, labels = load_split(trained_digits.processed_file("test"))
    keras_model = load_model(trained_digits.model_file)

    network = load_network(trained_digits.runtime_model_file)
    probabilities = network.predict(images, batch_size=300)

    assert isinstance(network, RuntimeModel)
    expected = keras_model.predict(images, verbose=0)
    np.testing.assert_allclose(probabilities, expected, atol=2e-6)
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    keras_loss, keras_accuracy = keras_model.evaluate(images, labels, verbose=0)
    assert sparse_categorical_crossentropy(probabilities, labels) == pytest.approx(keras_loss, abs=1e-5)
    assert float(np.mean(probabilities.argmax(axis=1) == labels)) == pytest.approx(keras_accuracy, abs=1e-6)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_is_exported_and_run_the_same_way(tmp_path, name):
    import keras

    from tasks.lib.architectures import build_layers

    assert set(SMALL_SETTINGS) == set(ARCHITECTURES), "give the new architecture small settings here"
    settings = ARCHITECTURES[name].settings(**SMALL_SETTINGS[name])
    keras.utils.set_random_seed(3)
    model = keras.Sequential(build_layers(name, settings, 7))
    images = np.random.default_rng(0).random((50, 28, 28), dtype=np.float32)
    expected = model.predict(images, verbose=0)
    path = tmp_path / "model.onnx"

    export_runtime_model(model, path)
    network = load_network(path)

    np.testing.assert_allclose(network.predict(images, batch_size=16), expected, atol=2e-6)
    assert network.predict(images[:0]).shape == (0, 7)


def test_wrong_input_shape_is_a_clear_error(trained_digits):
    with pytest.raises(ValueError, match=r"model.onnx: the model expects inputs of shape \(n, 28, 28\), "
                                         r"got \(2, 27, 28\)"):
        load_network(trained_digits.runtime_model_file).predict(np.zeros((2, 27, 28), np.float32))


@pytest.mark.parametrize("loader, name", [(load_network, "model.onnx"), (load_model, "model.keras")],
                         ids=["load_network", "keras load_model"])
def test_missing_model_is_a_clear_error(tmp_path, loader, name):
    with pytest.raises(TrainingError, match=rf"{name}: no model file; run the train stage first"):
        loader(tmp_path / name)


def test_a_file_that_is_not_an_onnx_model_is_refused_by_name(trained_digits, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(trained_digits.model_file.read_bytes())  # a .keras zip under the ONNX name

    with pytest.raises(ModelFileError, match=r"model.onnx: expected an ONNX model exported by the train stage; "
                                             r"ONNX Runtime says: .+") as raised:
        load_network(path)
    assert "\n" not in str(raised.value)


def test_lambda_layer_is_refused_by_keras_safe_mode(tmp_path):
    """Keras loads only the `.keras` file of a champion promoted before ONNX export existed (tasks/promote.py)."""
    import keras

    model = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Lambda(lambda tensor: tensor * 2)])
    path = tmp_path / "model.keras"
    model.save(path)

    with pytest.raises(ValueError, match="Lambda"):
        load_model(path)


def test_the_cnn_settings_used_here_are_valid():
    assert CnnSettings(**SMALL_SETTINGS["cnn"]).filters == (4, 8)
