"""A plain Keras CNN script, the baseline for the pipeline's CNN in `make bench`: keras-io's `mnist_convnet`
(https://keras.io/examples/vision/mnist_convnet/), run on the same Fashion-MNIST files.

Conv2D(32, 3x3, relu) -> MaxPooling(2) -> Conv2D(64, 3x3, relu) -> MaxPooling(2) -> Flatten -> Dropout(0.5) ->
Dense(10, softmax); adam, batch 128, 15 epochs (keras-io also holds out 10 % for validation; so does this). The
only additions: the pipeline's seed, the validation accuracy after each epoch with the training seconds so far, the
test accuracy at the end, and one JSON line with the timings.

    python benchmarks/baseline_plain_cnn.py [DATA_DIR] [EPOCHS] [SEED]
"""

import gzip
import json
import sys
import time

started = time.perf_counter()
import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

data_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42


def load(name, offset, shape):
    with gzip.open(f"{data_dir}/{name}.gz") as stream:
        return np.frombuffer(stream.read(), np.uint8, offset=offset).reshape(shape)


x_train = np.expand_dims(load("train-images-idx3-ubyte", 16, (-1, 28, 28)).astype("float32") / 255, -1)
y_train = load("train-labels-idx1-ubyte", 8, (-1,))
x_test = np.expand_dims(load("t10k-images-idx3-ubyte", 16, (-1, 28, 28)).astype("float32") / 255, -1)
y_test = load("t10k-labels-idx1-ubyte", 8, (-1,))

keras.utils.set_random_seed(seed)
model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Flatten(),
    layers.Dropout(0.5),
    layers.Dense(10, activation="softmax"),
])
model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])


class ValidationCurve(keras.callbacks.Callback):
    """Training seconds so far (the epoch's validation pass included, as in fit) and validation accuracy at the end
    of each epoch."""

    def __init__(self):
        super().__init__()
        self.train_seconds, self.curve = 0.0, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += time.perf_counter() - self.epoch_started
        self.curve.append([epoch + 1, round(self.train_seconds, 2), float((logs or {})["val_accuracy"])])


curve = ValidationCurve()
model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1, verbose=2, callbacks=[curve])
test_accuracy = float(np.mean(model.predict(x_test, batch_size=1024, verbose=0).argmax(axis=1) == y_test))
print(json.dumps({"seed": seed, "train_seconds": curve.train_seconds, "test_accuracy": test_accuracy,
                  "curve": curve.curve,
                  "epochs": epochs, "batch_size": 128, "process_seconds": time.perf_counter() - started}))
