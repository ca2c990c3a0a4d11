"""Inference outside training: every architecture runs the same way, through ONNX Runtime.

The train stage writes each model twice: `model.keras` (what Keras trains, resumes and promotes) and `model.onnx`,
made by Keras' own `Model.export(format="onnx")` (tasks/lib/model_file.py). Evaluate, promote and predict run
`model.onnx` with ONNX Runtime. Why not Keras itself: importing it (and TensorFlow) takes 9 s of CPU per process on
this 2-core machine, against 0.4 s for ONNX Runtime, which then runs the CNN over 10,000 test images in about 1 s
(benchmarks/RESULTS.md, "Inference runtime", has the measurement and LiteRT's figures).

Loading is safe by construction: an ONNX file is a graph of standard operators and its weights, read as protobuf;
nothing in it is executed as Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.common.errors import ModelFileError, TrainingError

# Keras clips probabilities to [epsilon, 1 - epsilon] before the cross-entropy's log.
KERAS_EPSILON = 1e-7
# Images per call: the CNN's activations for 1,024 images take about 60 MB; all 10,000 at once took 1.8 GB.
BATCH_SIZE = 1024
_QUIET = 3  # ONNX Runtime's log severity: errors only


class RuntimeModel:
    """A model loaded by ONNX Runtime; `predict` returns each class's probability, like `keras.Model.predict`."""

    def __init__(self, session, path: Path):
        self._session = session
        self._input = session.get_inputs()[0]
        self.path = path
        self.input_shape = tuple(self._input.shape[1:])

    def predict(self, images: np.ndarray, batch_size: int = BATCH_SIZE, verbose: int = 0) -> np.ndarray:
        if tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.path}: the model expects inputs of shape "
                             f"(n, {', '.join(map(str, self.input_shape))}), got {images.shape}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs = [self._session.run(None, {self._input.name: images[start:start + batch_size]})[0]
                   for start in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, self._session.get_outputs()[0].shape[1]),
                                                                np.float32)


def load_network(path: Path) -> RuntimeModel:
    """The ONNX model at `path` (a stage's `model.onnx` or a champion's), ready to predict."""
    if not path.exists():
        raise TrainingError(f"{path}: no model file; run the train stage first")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = _QUIET
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own exception types, one per failure, from C++
        raise ModelFileError(f"{path}: expected an ONNX model exported by the train stage; "
                             f"ONNX Runtime says: {str(error).splitlines()[0]}") from None
    return RuntimeModel(session, path)


def sparse_categorical_crossentropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer labels under predicted probabilities, computed as Keras does."""
    picked = probabilities[np.arange(len(labels)), labels.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(picked, KERAS_EPSILON, 1.0 - KERAS_EPSILON))))
