"""Inference for saved models without importing TensorFlow, when the model is the pipeline's kind.

Importing Keras (and with it TensorFlow) costs about 4 s per process on 2 cores, several times what the
evaluate stage's own work takes. A `.keras` file is a zip of `config.json` and `model.weights.h5`; when the
config is a Sequential stack of Input, Flatten and Dense layers (relu, softmax or linear), the forward pass is
two matrix products that NumPy does exactly as Keras does in float32. Any other model is loaded by Keras in
safe mode. Nothing in the file is ever executed: the config is read as JSON and the weights as arrays.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.common.errors import TrainingError

# Keras clips probabilities to [epsilon, 1 - epsilon] before the cross-entropy's log.
KERAS_EPSILON = 1e-7
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda values: values,
    "relu": lambda values: np.maximum(values, 0.0),
    "softmax": lambda values: _softmax(values),
}


_SNAKE_CASE = {"Flatten": "flatten", "Dense": "dense"}


class UnsupportedModel(Exception):
    """The saved model is not a plain dense stack; it is loaded by Keras instead."""


@dataclass(frozen=True)
class DenseLayer:
    kernel: np.ndarray
    bias: np.ndarray | None
    activation: str


class DenseNetwork:
    """A Sequential Flatten -> Dense... model read from a `.keras` file; `predict` mirrors `keras.Model.predict`."""

    def __init__(self, input_shape: tuple[int, ...], layers: list[DenseLayer]):
        self.input_shape = input_shape
        self.layers = layers

    def predict(self, images: np.ndarray, batch_size: int = 4096, verbose: int = 0) -> np.ndarray:
        if tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"model expects inputs of shape (n, {', '.join(map(str, self.input_shape))}), "
                             f"got {images.shape}")
        outputs = [self._forward(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, self.layers[-1].kernel.shape[1]), np.float32)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        values = batch.reshape(len(batch), -1).astype(np.float32, copy=False)
        for layer in self.layers:
            values = values @ layer.kernel
            if layer.bias is not None:
                values += layer.bias
            values = ACTIVATIONS[layer.activation](values)
        return values


def load_network(path: Path):
    """The model at `path`: a `DenseNetwork` when it is a plain dense stack, otherwise Keras' safe-mode load."""
    if not path.exists():
        raise TrainingError(f"{path}: no model file; run the train stage first")
    try:
        return read_dense_network(path)
    except UnsupportedModel:
        from tasks.lib.predictions import load_model

        return load_model(path)


def read_dense_network(path: Path) -> DenseNetwork:
    """Read a dense stack from a `.keras` zip; raise `UnsupportedModel` for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise UnsupportedModel(f"{path}: not a Keras 3 archive ({error})") from error
    layer_configs = _sequential_layers(config)
    import h5py

    with h5py.File(io.BytesIO(weights), "r") as stored:
        layers = [_dense_layer(layer, stored, storage_name)
                  for layer, storage_name in zip(layer_configs[1:], _storage_names(layer_configs[1:]))
                  if layer["class_name"] == "Dense"]
    input_shape = tuple(layer_configs[0]["config"]["batch_shape"][1:])
    if not layers or None in input_shape or int(np.prod(input_shape)) != layers[0].kernel.shape[0]:
        raise UnsupportedModel(f"{path}: input shape {input_shape} does not feed the first Dense layer")
    return DenseNetwork(input_shape, layers)


def _sequential_layers(config: dict) -> list[dict]:
    layers = config.get("config", {}).get("layers", [])
    if config.get("class_name") != "Sequential" or not layers or layers[0].get("class_name") != "InputLayer":
        raise UnsupportedModel("not a Sequential model that starts with an Input layer")
    if layers[0]["config"].get("dtype") != "float32":
        raise UnsupportedModel("inputs are not float32")
    kinds = [layer.get("class_name") for layer in layers[1:]]
    if not kinds or kinds[0] != "Flatten" or any(kind != "Dense" for kind in kinds[1:]):
        raise UnsupportedModel(f"layers {kinds} are not Flatten followed by Dense layers")
    return layers


def _storage_names(layers: list[dict]) -> list[str]:
    """Where Keras' weights file keeps each layer: not under the layer's name but under its class name in
    snake case, numbered from the second of a kind (`dense`, `dense_1`, ...), as keras.saving does for lists."""
    used: dict[str, int] = {}
    names = []
    for layer in layers:
        base = _SNAKE_CASE[layer["class_name"]]
        names.append(base if base not in used else f"{base}_{used[base] + 1}")
        used[base] = used[base] + 1 if base in used else 0
    return names


def _dense_layer(layer: dict, stored, storage_name: str) -> DenseLayer:
    settings = layer["config"]
    dtype_policy = settings.get("dtype", {}).get("config", {}).get("name")
    if settings.get("activation") not in ACTIVATIONS or dtype_policy != "float32":
        raise UnsupportedModel(f"Dense layer {settings.get('name')!r}: activation {settings.get('activation')!r}, "
                               f"dtype policy {dtype_policy!r}")
    group = stored.get(f"layers/{storage_name}/vars")
    if group is None or "0" not in group:
        raise UnsupportedModel(f"no weights stored for layer {settings['name']!r} (looked in layers/{storage_name})")
    bias = np.asarray(group["1"], dtype=np.float32) if settings.get("use_bias", True) else None
    return DenseLayer(np.asarray(group["0"], dtype=np.float32), bias, settings["activation"])


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def sparse_categorical_crossentropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer labels under predicted probabilities, computed as Keras does."""
    picked = probabilities[np.arange(len(labels)), labels.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(picked, KERAS_EPSILON, 1.0 - KERAS_EPSILON))))
