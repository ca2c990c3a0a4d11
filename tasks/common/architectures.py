"""The model architectures `train.model` chooses from. Each is its settings, nested under its name in params.yaml
(`train.dense.*`, `train.cnn.*`, and per dataset `data.<dataset>.train.<name>.*`), and a function that builds its
layers for 28x28 inputs and N classes. Adding an architecture touches this module and its test: the config, the
train stage, sweeps and the docs' list of names read ARCHITECTURES.

Keras is imported by the builders only: params.yaml is validated without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DenseSettings(_Settings):
    """The lecture's model: Flatten -> Dense(units, relu) -> Dense(N, softmax)."""

    units: int = Field(default=128, ge=1, le=8192)


class CnnSettings(_Settings):
    """A small convolutional net: per entry of `filters`, a block Conv2D(3x3, same, relu) -> MaxPooling(2x2); then
    Dropout -> Dense(dense_units, relu) -> Dropout -> Dense(N, softmax).

    No batch normalization: on Fashion-MNIST with 2 CPU cores it made each epoch 1.5 times as long (28-35 s
    against 18-20 s for filters (16, 32)) and the first epochs less accurate (0.83 against 0.87 after one), and on
    small data (mnist-sample's 3,600 training images, 29 batches an epoch) its moving averages lagged so far that
    validation accuracy fell from 0.70 to 0.48 over the first epochs (benchmarks/tuning_notes.md)."""

    filters: tuple[Annotated[int, Field(ge=1, le=1024)], ...] = Field(default=(16, 32), min_length=1, max_length=4)
    dense_units: int = Field(default=128, ge=1, le=8192)
    dropout: float = Field(default=0.2, ge=0, lt=1)


def _dense_layers(settings: DenseSettings, num_classes: int) -> list:
    import keras

    return [keras.Input(shape=(28, 28)), keras.layers.Flatten(),
            keras.layers.Dense(settings.units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax")]


def _cnn_layers(settings: CnnSettings, num_classes: int) -> list:
    import keras

    layers = [keras.Input(shape=(28, 28)), keras.layers.Reshape((28, 28, 1))]
    for filters in settings.filters:
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(2)]
    return layers + [keras.layers.Flatten(), keras.layers.Dropout(settings.dropout),
                     keras.layers.Dense(settings.dense_units, activation="relu"),
                     keras.layers.Dropout(settings.dropout), keras.layers.Dense(num_classes, activation="softmax")]


@dataclass(frozen=True)
class Architecture:
    settings: type[_Settings]
    layers: Callable  # (settings, num_classes) -> the layers of a keras.Sequential, Input first


ARCHITECTURES: dict[str, Architecture] = {
    "dense": Architecture(DenseSettings, _dense_layers),
    "cnn": Architecture(CnnSettings, _cnn_layers),
}


def build_layers(name: str, settings: _Settings, num_classes: int) -> list:
    return ARCHITECTURES[name].layers(settings, num_classes)
