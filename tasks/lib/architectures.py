"""The layers of each architecture in tasks/common/architectures.py (`train.model`), for IMAGE_SHAPE inputs and N
classes. Only the train stage runs this module (dvc.yaml lists it there), so an edit here reruns train and what
follows, and no stage before it. Keras is imported by the builders only."""

from __future__ import annotations

from collections.abc import Callable

from tasks.common.architectures import CnnSettings, DenseSettings
from tasks.lib.geometry import IMAGE_SHAPE


def dense_layers(settings: DenseSettings, num_classes: int) -> list:
    import keras

    return [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten(),
            keras.layers.Dense(settings.units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax")]


def cnn_layers(settings: CnnSettings, num_classes: int) -> list:
    import keras

    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Reshape((*IMAGE_SHAPE, 1))]
    for filters in settings.filters:
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(2)]
    return layers + [keras.layers.Flatten(), keras.layers.Dropout(settings.dropout),
                     keras.layers.Dense(settings.dense_units, activation="relu"),
                     keras.layers.Dropout(settings.dropout), keras.layers.Dense(num_classes, activation="softmax")]


# (settings, num_classes) -> the layers of a keras.Sequential, Input first; one per name in ARCHITECTURES
LAYERS: dict[str, Callable] = {"dense": dense_layers, "cnn": cnn_layers}


def build_layers(name: str, settings, num_classes: int) -> list:
    return LAYERS[name](settings, num_classes)
