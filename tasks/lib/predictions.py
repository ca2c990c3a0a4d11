"""Loading models safely, and test-set predictions saved with a fingerprint of the test set they belong to.

Evaluate computes the test set's probabilities once and saves them here with the predicted labels. Promote
compares champion and challenger from the saved labels, and report draws its mistakes from the saved probabilities,
without loading either model (or importing TensorFlow), as long as the test set is the one they were made on.
"""

from __future__ import annotations

import zipfile
from hashlib import sha256
from pathlib import Path

import numpy as np

from tasks.common.errors import ModelFileError, TrainingError
from tasks.common.fileio import atomic_path, load_arrays


def load_model(path: Path):
    """Load a model with Keras' safe mode (no arbitrary code from Lambda layers)."""
    import keras

    if not path.exists():
        raise TrainingError(f"{path}: no model file; run the train stage first")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: expected a Keras 3 `.keras` model that loads in safe mode; "
                             f"Keras says: {error}") from error


def predict_labels(model, images: np.ndarray) -> np.ndarray:
    return model.predict(images, verbose=0, batch_size=1024).argmax(axis=1).astype(np.uint8)


def test_set_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    digest = sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def save_predictions(path: Path, predicted: np.ndarray, fingerprint: str,
                     probabilities: np.ndarray | None = None) -> None:
    """The predicted labels (and, from evaluate, each class's probability) for the test set `fingerprint` names."""
    arrays = {"predicted": predicted.astype(np.uint8), "test_set_sha256": np.array(fingerprint)}
    if probabilities is not None:
        arrays["probabilities"] = probabilities.astype(np.float32)
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as stream:
        np.savez(stream, **arrays)  # type: ignore[arg-type]  # numpy's stub: `allow_pickle` after the files


def load_predictions(path: Path, fingerprint: str) -> np.ndarray | None:
    """The saved predicted labels, or None when they were made on another test set (or never saved)."""
    if not path.exists():
        return None
    arrays = load_arrays(path, ("predicted", "test_set_sha256"))
    return arrays["predicted"] if str(arrays["test_set_sha256"]) == fingerprint else None


def load_probabilities(path: Path, fingerprint: str) -> np.ndarray | None:
    """The saved probabilities (rows: test images, columns: classes), or None when they were made on another test
    set or never saved."""
    if not path.exists():
        return None
    # no probabilities were saved before evaluate kept them
    arrays = load_arrays(path, ("test_set_sha256",), optional=("probabilities",))
    return arrays.get("probabilities") if str(arrays["test_set_sha256"]) == fingerprint else None
