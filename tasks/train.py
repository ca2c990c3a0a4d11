"""Stage 4, train: Flatten -> Dense(units, relu) -> Dense(10, softmax), adam, sparse categorical cross-entropy.

A threshold callback stops training at the end of the first epoch whose monitored metric reaches the
dataset's threshold. Writes `models/<dataset>/model.keras` atomically, the per-epoch history as a DVC
plot (`training_history.csv`) and a summary with the stop epoch (`training.json`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tasks import distribution
from tasks.config import NUM_CLASSES, TrainParams
from tasks.errors import ConfigError, TrainingError
from tasks.fileio import atomic_path, write_json_atomic, write_text_atomic
from tasks.normalize import load_split
from tasks.paths import DatasetPaths

logger = logging.getLogger(__name__)
# What `fit` logs with metrics=["accuracy"] and validation data; anything else cannot be monitored.
MONITORABLE_METRICS = ("accuracy", "loss", "val_accuracy", "val_loss")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


@dataclass(frozen=True)
class TrainResult:
    dataset: str
    stop_epoch: int
    stopped_by_threshold: bool
    monitor: str
    threshold: float
    final_metrics: dict[str, float]
    train_seconds: float
    train_images: int
    validation_images: int
    model_file: str


def check_monitor(params: TrainParams) -> None:
    """Fail before training when the threshold callback would watch a metric that `fit` never logs."""
    if params.monitor not in MONITORABLE_METRICS:
        raise ConfigError(
            f"train.monitor: {params.monitor!r} is not a compiled metric; allowed values: {list(MONITORABLE_METRICS)}"
        )


def split_validation(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """Hold out a seeded random `fraction` of the training images for validation; inputs are not modified."""
    order = np.random.default_rng(seed).permutation(len(images))
    held_out = max(1, int(round(len(images) * fraction)))
    validation, train = order[:held_out], order[held_out:]
    return (images[train], labels[train]), (images[validation], labels[validation])


def build_model(units: int, learning_rate: float, steps_per_execution: int = 1):
    import keras

    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(NUM_CLASSES, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)
    return model


def batches_of(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Shuffled batches, reshuffled every epoch. The shuffle buffer holds indices, not images: one copy of the
    data lives in TensorFlow's memory and each batch is gathered from it."""
    import tensorflow as tf

    images_tensor, labels_tensor = tf.constant(images), tf.constant(labels)
    return (tf.data.Dataset.range(len(images))
            .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .map(lambda rows: (tf.gather(images_tensor, rows), tf.gather(labels_tensor, rows)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def fit_model(model, train_data, validation_data, params: TrainParams, extra_callbacks: Sequence = ()):
    """Train with the threshold callback; return (history dict, stop epoch, stopped by threshold).

    `train_data` is a one-element list holding (images, labels): it is emptied once the batches hold their
    own copy, so the NumPy arrays can be freed during training. `extra_callbacks` (Keras callbacks) run after
    the pipeline's own, for instance to report progress to an orchestrator.
    """
    import keras

    from tasks.callbacks import ThresholdStop

    batches = batches_of(*train_data.pop(), params.batch_size, params.seed)
    threshold_stop = ThresholdStop(params.monitor, params.threshold)
    history = model.fit(batches, epochs=params.epochs, validation_data=validation_data, verbose=2, shuffle=False,
                        callbacks=[threshold_stop, keras.callbacks.TerminateOnNaN(), *extra_callbacks])
    epochs_run = len(history.history["loss"])
    return history.history, epochs_run, threshold_stop.stopped_epoch is not None


def train_model(paths: DatasetPaths, params: TrainParams, extra_callbacks: Sequence = ()) -> TrainResult:
    """Train on `data/processed/<dataset>/train.npz`; write the model, its history and a summary.

    `extra_callbacks` are Keras callbacks added after the pipeline's own (see `fit_model`)."""
    check_monitor(params)
    import keras

    # No name keeps the loaded arrays alive: only the split copies stay in memory until batching.
    train_data, validation_data = split_validation(*load_split(paths.processed_file("train")),
                                                   params.validation_fraction, params.seed)
    strategy = distribution.strategy_for(params.distribution)  # before any other TensorFlow operation
    keras.utils.set_random_seed(params.seed)
    model = distribution.build_under(strategy, build_model, params)
    started = time.perf_counter()
    train_count = len(train_data[0])
    handed_over = [train_data]
    del train_data  # fit_model empties `handed_over`, so the arrays are freed once batched
    history, stop_epoch, by_threshold = fit_model(model, handed_over, validation_data, params,
                                                   extra_callbacks)
    seconds = time.perf_counter() - started
    final = {name: float(values[-1]) for name, values in history.items()}
    if not all(math.isfinite(value) for value in final.values()):
        raise TrainingError(f"{paths.dataset}: training diverged at epoch {stop_epoch} (final metrics {final}); "
                            f"lower train.learning_rate (now {params.learning_rate}); no model was written")
    outputs = distribution.writer_paths(paths, params.distribution)  # a temporary root on non-chief workers
    with atomic_path(outputs.model_file) as tmp_path:
        model.save(tmp_path)
    result = TrainResult(paths.dataset, stop_epoch, by_threshold, params.monitor, params.threshold, final,
                         round(seconds, 3), train_count, len(validation_data[0]), str(paths.model_file))
    write_text_atomic(outputs.training_history_file, _history_csv(history))
    # Wall time varies run to run; it is logged and returned but kept out of this DVC-tracked file.
    summary = {key: value for key, value in asdict(result).items() if key != "train_seconds"}
    write_json_atomic(outputs.training_summary_file, {**summary, "params": params.model_dump()})
    distribution.discard_worker_outputs(outputs, paths)
    logger.info("%s: stopped at epoch %d (%s) in %.1f s, %s; model -> %s", paths.dataset, stop_epoch,
                "threshold reached" if by_threshold else "epoch limit", seconds, final, paths.model_file)
    return result


def _history_csv(history: dict[str, list[float]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for epoch in range(len(history["loss"])):
        writer.writerow([epoch + 1] + [f"{history[name][epoch]:.6f}" for name in HISTORY_COLUMNS[1:]])
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    from tasks.cli import run_stage

    return run_stage("train", argv, lambda paths, params: train_model(paths, params.train_for(paths.dataset)))


if __name__ == "__main__":
    sys.exit(main())
