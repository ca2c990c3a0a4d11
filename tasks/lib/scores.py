"""Scores of predicted labels against true ones: the confusion matrix and per-class precision, recall and F1.

Evaluate reports them and promote's recall gate compares them; both call `summarize_predictions`.
"""

from __future__ import annotations

import numpy as np


def summarize_predictions(true_labels: np.ndarray, predicted_labels: np.ndarray, class_names: tuple[str, ...]):
    """Confusion matrix over all the classes of `class_names` (rows: actual, columns: predicted) and a per-class
    report, even when a class is absent from the test set (its scores are then 0).

    Computed with NumPy: the numbers equal scikit-learn's `confusion_matrix` and `classification_report`
    with `zero_division=0` (tests/tasks/test_evaluate.py checks it), without the 0.8 s import of sklearn.
    """
    num_classes = len(class_names)
    _check_labels(true_labels, predicted_labels, num_classes)
    codes = true_labels.astype(np.int64) * num_classes + predicted_labels.astype(np.int64)
    matrix = np.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    correct, support, predicted_count = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _share(correct, predicted_count)
    recall = _share(correct, support)
    f1 = _share(2 * correct, support + predicted_count)  # 2 tp / (2 tp + fp + fn)
    per_class = {name: {"precision": float(precision[index]), "recall": float(recall[index]),
                        "f1": float(f1[index]), "support": int(support[index])}
                 for index, name in enumerate(class_names)}
    return matrix, per_class


def _check_labels(true_labels: np.ndarray, predicted_labels: np.ndarray, num_classes: int) -> None:
    if true_labels.ndim != 1 or true_labels.shape != predicted_labels.shape:
        raise ValueError(f"true and predicted labels must be 1-D arrays of one length; found shapes "
                         f"{true_labels.shape} and {predicted_labels.shape}")
    for name, values in (("true label", true_labels), ("predicted label", predicted_labels)):
        if not np.issubdtype(values.dtype, np.integer):
            raise TypeError(f"{name}s must be integers in 0..{num_classes - 1}; found dtype {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name}s must be integers in 0..{num_classes - 1}; found {values.min()}..{values.max()}")


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)
