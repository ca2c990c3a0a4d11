"""The plain Keras script the pipeline replaces (lecture notes, ../shared/seeds/): the baseline for `make bench`.

Load Fashion-MNIST from the same local IDX files, divide by 255, Flatten -> Dense(128, relu) -> Dense(10,
softmax), adam, sparse categorical cross-entropy, Keras' default batch size (32), 5 epochs, then evaluate.
The only additions: the same seed as the pipeline, and one JSON line with the timings and the accuracy.

    python benchmarks/baseline_plain_keras.py [DATA_DIR]
"""

import gzip
import json
import sys
import time

started = time.perf_counter()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

imported = time.perf_counter()
data_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"


def load(name, offset, shape):
    with gzip.open(f"{data_dir}/{name}.gz") as stream:
        return np.frombuffer(stream.read(), np.uint8, offset=offset).reshape(shape)


train_images = load("train-images-idx3-ubyte", 16, (-1, 28, 28))
train_labels = load("train-labels-idx1-ubyte", 8, (-1,))
test_images = load("t10k-images-idx3-ubyte", 16, (-1, 28, 28))
test_labels = load("t10k-labels-idx1-ubyte", 8, (-1,))
train_images = train_images / 255.0
test_images = test_images / 255.0
loaded = time.perf_counter()

tf.keras.utils.set_random_seed(42)
model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(128, activation=tf.nn.relu),
    tf.keras.layers.Dense(10, activation=tf.nn.softmax),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
train_started = time.perf_counter()
model.fit(train_images, train_labels, epochs=5, verbose=2)
trained = time.perf_counter()
test_loss, test_accuracy = model.evaluate(test_images, test_labels, verbose=0)
finished = time.perf_counter()

print(json.dumps({
    "import_seconds": imported - started, "load_seconds": loaded - imported,
    "train_seconds": trained - train_started, "evaluate_seconds": finished - trained,
    "total_seconds": finished - started, "test_accuracy": float(test_accuracy), "epochs": 5, "batch_size": 32,
}))
