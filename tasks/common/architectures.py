"""The model architectures `train.model` chooses from, by name, and each one's settings, nested under its name in
params.yaml (`train.dense.*`, `train.cnn.*`, and per dataset `data.<dataset>.train.<name>.*`). The config, sweeps
and the docs' list of names read ARCHITECTURES. The layers each one builds are in tasks/lib/architectures.py, which
only the train stage runs, so an edit there reruns train onward, not every stage: adding an architecture touches
both modules and their tests.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Architecture:
    settings: type[_Settings]


ARCHITECTURES: dict[str, Architecture] = {
    "dense": Architecture(DenseSettings),
    "cnn": Architecture(CnnSettings),
}
