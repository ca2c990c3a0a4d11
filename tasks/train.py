"""Stage 6, train: the architecture `train.model` names (tasks/lib/architectures.py: by default a small CNN; `dense`
is the lecture's Flatten -> Dense(units, relu) -> Dense(classes, softmax)), adam, sparse categorical cross-entropy.

A threshold callback stops training at the end of the first epoch whose monitored metric reaches the
dataset's threshold. Every epoch is backed up, so a killed run resumes where it stopped when rerun.
Writes `models/<dataset>/model.keras` and its ONNX export `model.onnx` atomically, the per-epoch history as a DVC plot
(`training_history.csv`) and a summary with the stop epoch (`training.json`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.lib import distribution
from tasks.common.config import TrainParams
from tasks.common.errors import StageInterrupted, TrainingError
from tasks.lib.device import training_device
from tasks.lib.model_file import save_model_files
from tasks.common.paths import DatasetPaths
from tasks.lib.startup import TENSORFLOW_NOISE, import_large, native_stderr_without
from tasks.lib.outputs import TrainingMetrics, TrainingSummary, load_split, write_history, write_record

logger = logging.getLogger(__name__)
# With train.learning_rate_decay_epochs, the learning rate ends at this share of train.learning_rate.
FINAL_LEARNING_RATE_SHARE = 0.05
# Beside Keras' own backup files in the dataset's train_backup_dir.
_HISTORY_LOG = "history.jsonl"
_FINGERPRINT = "fingerprint.json"


@dataclass(frozen=True)
class TrainResult:
    """What the stage returns: the summary it writes to training.json, and its wall time, which varies run to run
    and so stays out of that DVC-tracked file."""

    summary: TrainingSummary
    train_seconds: float


Split = tuple[np.ndarray, np.ndarray]  # (images, labels)


def split_validation(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out a seeded random `fraction` of the training images for validation; inputs are not modified."""
    order = np.random.default_rng(seed).permutation(len(images))
    held_out = max(1, int(round(len(images) * fraction)))
    validation, train = order[:held_out], order[held_out:]
    return (images[train], labels[train]), (images[validation], labels[validation])


def build_model(params: TrainParams, decay_steps: int | None = None, steps_per_execution: int | None = None):
    """The architecture `params.model` with one output per class, compiled with adam; with `decay_steps`, the
    learning rate decays along a cosine to 5 %. `steps_per_execution` defaults to the params' own."""
    import keras

    from tasks.lib.architectures import build_layers

    learning_rate = params.learning_rate
    if decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps,
                                                               alpha=FINAL_LEARNING_RATE_SHARE)
    model = keras.Sequential(build_layers(params.model, getattr(params, params.model), params.num_classes))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution or params.steps_per_execution)
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


def validation_batches_of(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """The held-out images as batches built once and cached. Handed to `fit` as NumPy arrays, Keras would
    rebuild its input pipeline at every epoch: about 25 ms an epoch for 1,000 images, measured."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).cache()


def fit_model(model, batches, validation_data: Split, params: TrainParams, backup_dir: Path,
              extra_callbacks: Sequence = ()):
    """Train with the threshold callback; return (history dict, stop epoch, stopped by threshold).

    Each epoch is backed up in `backup_dir` (Keras' BackupAndRestore): a run killed at epoch k resumes after
    epoch k when started again with the same data and params, and the returned history covers every epoch.
    `batches` are the training batches (`batches_of`); `validation_data` is (images, labels). `extra_callbacks`
    (Keras callbacks) run after the pipeline's own, for instance to report progress to an orchestrator.
    """
    import keras

    from tasks.lib.callbacks import EpochRecorder, ThresholdStop

    validation_batches = validation_batches_of(*validation_data, params.batch_size)
    threshold_stop = ThresholdStop(params.monitor, params.threshold)
    # The recorder writes an epoch's line before the backup records that epoch as done.
    recorder = EpochRecorder(backup_dir / _HISTORY_LOG)
    model.fit(batches, epochs=params.epochs, validation_data=validation_batches, verbose=2, shuffle=False,
              callbacks=[threshold_stop, keras.callbacks.TerminateOnNaN(), recorder,
                         keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),
                         *extra_callbacks])
    history = recorder.history()
    return history, len(recorder.records), threshold_stop.stopped_epoch is not None


def backed_up_epochs(backup_dir: Path) -> int:
    """The epochs Keras' BackupAndRestore has saved in `backup_dir` (its own training_metadata.json); an error
    when there is no readable backup."""
    return json.loads((backup_dir / "training_metadata.json").read_text())["epoch"]


def prepare_backup(backup_dir: Path, fingerprint: dict) -> None:
    """Keep `backup_dir` only if it holds an interrupted run of this very training (same params and the same training
    data, by content); otherwise start it afresh, so a backup never leaks into a run it does not belong to, and say
    in one line why a backup was dropped."""
    marker = backup_dir / _FINGERPRINT
    reason = _backup_mismatch(backup_dir, fingerprint) if backup_dir.exists() else None
    if backup_dir.exists() and reason is None:
        return
    if reason:
        logger.warning("the backup of an interrupted training run in %s is not resumed: %s; training starts at epoch 1",
                       backup_dir, reason)
    shutil.rmtree(backup_dir, ignore_errors=True)
    backup_dir.mkdir(parents=True)
    marker.write_text(json.dumps(fingerprint))


def _backup_mismatch(backup_dir: Path, fingerprint: dict) -> str | None:
    """Why the backup in `backup_dir` does not belong to the training `fingerprint` describes; None if it does."""
    try:
        recorded = json.loads((backup_dir / _FINGERPRINT).read_text())
        done = backed_up_epochs(backup_dir)
        logged = len((backup_dir / _HISTORY_LOG).read_text().splitlines())
    except (OSError, ValueError, KeyError, TypeError):
        return "it holds no complete epoch"
    if recorded.get("params") != fingerprint["params"]:
        changed = sorted(key for key in {*recorded.get("params", {}), *fingerprint["params"]}
                         if recorded.get("params", {}).get(key) != fingerprint["params"].get(key))
        return f"the training params differ ({', '.join(changed)})"
    if recorded.get("train_data") != fingerprint["train_data"]:
        return "the training data differ (train.npz holds other images or labels)"
    if not 0 < done <= logged:
        return "it holds no complete epoch"
    return None


def train_data_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the training arrays: the content training reads, whatever the file's time (normalize rewrites
    train.npz on every run of the flow)."""
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data.cast("B"))
    return digest.hexdigest()


def train_model(paths: DatasetPaths, params: TrainParams, extra_callbacks: Sequence = ()) -> TrainResult:
    """Train on `data/processed/<dataset>/train.npz`; write the model, its history and a summary.

    `extra_callbacks` are Keras callbacks added after the pipeline's own (see `fit_model`)."""
    import_large("keras")  # see tasks/lib/startup.py
    import keras

    with native_stderr_without(TENSORFLOW_NOISE):  # the CUDA probe: "failed call to cuInit" without a GPU
        device = training_device()
    train_data, validation_data, digest = _load_training_data(paths, params)
    prepare_backup(paths.train_backup_dir, {"params": params.model_dump(mode="json"), "train_data": digest})
    strategy = distribution.strategy_for(params.distribution)  # before any other TensorFlow operation
    keras.utils.set_random_seed(params.seed)
    train_count = len(train_data[0])
    model = distribution.build_under(strategy, build_model, params, _decay_steps(params, train_count))
    started = time.perf_counter()
    batches = batches_of(*train_data, params.batch_size, params.seed)
    del train_data  # the batches hold their own copy: the NumPy arrays are freed before training starts
    try:
        history, stop_epoch, by_threshold = fit_model(model, batches, validation_data, params,
                                                       paths.train_backup_dir, extra_callbacks)
    except KeyboardInterrupt:
        raise StageInterrupted(f"{paths.dataset}: training interrupted (Ctrl-C); {_resume_note(paths)}; "
                               f"{paths.model_file} was not changed") from None
    seconds = time.perf_counter() - started
    final = {name: float(values[-1]) for name, values in history.items()}
    if not all(math.isfinite(value) for value in final.values()):
        raise TrainingError(f"{paths.dataset}: training diverged at epoch {stop_epoch} (final metrics {final}); "
                            f"lower train.learning_rate (now {params.learning_rate}); no model was written")
    outputs = distribution.writer_paths(paths, params.distribution)  # a temporary root on non-chief workers
    # model.keras and model.onnx (what evaluate, promote and predict run): the same weights give the same bytes
    save_model_files(model, outputs.model_file, outputs.runtime_model_file)
    summary = TrainingSummary(paths.dataset, stop_epoch, by_threshold, params.monitor, params.threshold, final,
                              train_count, len(validation_data[0]), str(paths.model_file.relative_to(paths.root)),
                              params.chosen(), device)
    write_history(outputs.training_history_file, history)
    write_record(outputs.training_summary_file, summary)
    write_record(outputs.training_metrics_file, TrainingMetrics(final["val_accuracy"], final["val_loss"], stop_epoch,
                                                                len(validation_data[0])))
    distribution.discard_worker_outputs(outputs, paths)
    logger.info("%s: %s on %s stopped at epoch %d (%s) in %.1f s, %s; model -> %s", paths.dataset, params.model,
                summary.device, stop_epoch, "threshold reached" if by_threshold else "epoch limit", seconds, final,
                paths.model_file)
    return TrainResult(summary, round(seconds, 3))


def _resume_note(paths: DatasetPaths) -> str:
    """What rerunning the stage will do, from the epoch the backup holds."""
    try:
        done = backed_up_epochs(paths.train_backup_dir)
    except (OSError, ValueError, KeyError, TypeError):
        done = 0
    return f"a rerun resumes after epoch {done}" if done else "a rerun starts at epoch 1"


def _load_training_data(paths: DatasetPaths, params: TrainParams) -> tuple[Split, Split, str]:
    """(training split, validation split, digest of train.npz's arrays). No name outside keeps the loaded arrays
    alive: only the split copies stay in memory until batching."""
    images, labels = load_split(paths.processed_file("train"))
    digest = train_data_digest(images, labels)
    train_data, validation_data = split_validation(images, labels, params.validation_fraction, params.seed)
    return train_data, validation_data, digest


def _decay_steps(params: TrainParams, train_count: int) -> int | None:
    if params.learning_rate_decay_epochs is None:
        return None
    return params.learning_rate_decay_epochs * math.ceil(train_count / params.batch_size)


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("train", argv, lambda paths, params: train_model(paths, params.train_for(paths.dataset)))


if __name__ == "__main__":
    raise SystemExit(main())
