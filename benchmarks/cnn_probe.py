"""Train one dataset's default model with the pipeline's own functions, with the validation accuracy after each
epoch; print one JSON line. For `make bench`'s CNN figures.

    python benchmarks/cnn_probe.py ROOT DATASET SEED

Like every probe and tuning path, it never reads the test split (tests/benchmarks/test_probes.py runs it without
one): `make bench` scores the model it leaves with the evaluate stage, the final report. The training seconds are
those of `fit()`, each epoch's validation pass included. Also printed: the training FLOPs per epoch (counted from
the layers), the device that trained, and this machine's float32 matmul peak measured by TensorFlow on the same
cores right after training.
"""

import json
import sys
import time
from pathlib import Path

from tasks.lib.startup import import_large

import_large("keras", freeze=True)  # as `python -m tasks.train` imports it (tasks/lib/startup.py)
import keras  # noqa: E402

from tasks.common.config import load_params  # noqa: E402
from tasks.common.paths import PARAMS_FILE, DatasetPaths  # noqa: E402
from tasks.train import train_model  # noqa: E402

MATMUL_SIZE, MATMUL_REPEATS = 2048, 10


class ValidationCurve(keras.callbacks.Callback):
    """[epoch, training seconds so far, validation accuracy] after each epoch; the epoch's validation pass is part
    of its time, as it is of fit's."""

    def __init__(self):
        super().__init__()
        self.train_seconds, self.curve = 0.0, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += time.perf_counter() - self.epoch_started
        self.curve.append([epoch + 1, round(self.train_seconds, 2), float((logs or {})["val_accuracy"])])


def training_flops_per_image(model) -> float:
    """Multiply-adds of the forward pass counted per Conv2D and Dense layer, x2 for FLOPs, x3 for training (the
    backward pass costs about twice the forward one). Pooling, activations and dropout are left out."""
    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_height, kernel_width, channels_in, _ = layer.kernel.shape
            forward += height * width * channels_out * kernel_height * kernel_width * channels_in
        elif isinstance(layer, keras.layers.Dense):
            forward += layer.kernel.shape[0] * layer.kernel.shape[1]
    return 3 * 2 * forward


def matmul_peak_flops() -> float:
    """The best of MATMUL_REPEATS float32 matmuls of MATMUL_SIZE squared, in FLOP/s, on TensorFlow's threads."""
    import tensorflow as tf

    a = tf.random.stateless_uniform((MATMUL_SIZE, MATMUL_SIZE), seed=(1, 2))
    b = tf.random.stateless_uniform((MATMUL_SIZE, MATMUL_SIZE), seed=(3, 4))
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(MATMUL_REPEATS):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * MATMUL_SIZE**3 / best


if __name__ == "__main__":
    root, dataset, seed = Path(sys.argv[1]).resolve(), sys.argv[2], int(sys.argv[3])
    params = load_params(root / PARAMS_FILE)
    paths = DatasetPaths(root, dataset)
    train_params = params.train_for(dataset).model_copy(update={"seed": seed})
    curve = ValidationCurve()
    captured = {}

    class KeepModel(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            captured["model"] = self.model

    training = train_model(paths, train_params, [curve, KeepModel()])
    print(json.dumps({
        "seed": seed, "model": train_params.model, "device": training.summary.device,
        "train_seconds": curve.train_seconds, "stop_epoch": training.summary.stop_epoch,
        "val_accuracy": curve.curve[-1][2], "curve": curve.curve,
        "train_images": training.summary.train_images,
        "flops_per_epoch": training_flops_per_image(captured["model"]) * training.summary.train_images,
        "matmul_peak_flops": matmul_peak_flops()}))
