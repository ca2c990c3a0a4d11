"""tasks/lib/scores.py: the confusion matrix and per-class report, against scikit-learn."""

import numpy as np
import pytest

from tasks.lib.scores import summarize_predictions

DIGITS = tuple(str(digit) for digit in range(10))


def test_missing_class_still_gives_ten_by_ten():
    true_labels = np.array([0, 1, 1, 2, 3])
    predicted = np.array([0, 1, 2, 2, 9])

    matrix, per_class = summarize_predictions(true_labels, predicted, DIGITS)

    assert matrix.shape == (10, 10) and matrix.sum() == 5
    assert per_class["5"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert per_class["1"]["recall"] == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_and_per_class_report_equal_sklearn(seed):
    """scikit-learn is the reference here; the stage computes the same numbers in NumPy."""
    from sklearn.metrics import classification_report, confusion_matrix

    rng = np.random.default_rng(seed)
    true_labels = rng.choice([0, 1, 2, 3, 4, 6, 7, 8, 9], size=500).astype(np.uint8)  # class 5 never occurs
    predicted = np.where(rng.random(500) < 0.7, true_labels, rng.integers(0, 9, 500)).astype(np.uint8)

    matrix, per_class = summarize_predictions(true_labels, predicted, DIGITS)

    np.testing.assert_array_equal(matrix, confusion_matrix(true_labels, predicted, labels=list(range(10))))
    expected = classification_report(true_labels, predicted, labels=list(range(10)), target_names=list(DIGITS),
                                     output_dict=True, zero_division=0)
    for name in DIGITS:
        assert per_class[name]["support"] == expected[name]["support"]
        for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert per_class[name][ours] == pytest.approx(expected[name][theirs], abs=1e-12), (name, ours)


def test_a_label_outside_0_to_9_is_refused_with_what_was_found():
    with pytest.raises(ValueError, match=r"predicted labels must be integers in 0\.\.9; found 0\.\.12"):
        summarize_predictions(np.array([0, 1]), np.array([0, 12]), DIGITS)


def test_labels_of_other_shapes_or_float_labels_are_refused_naming_what_was_found():
    with pytest.raises(ValueError, match=r"1-D arrays of one length; found shapes \(3,\) and \(2,\)"):
        summarize_predictions(np.array([0, 1, 2]), np.array([0, 1]), DIGITS)
    with pytest.raises(TypeError, match="true labels must be integers in 0..9; found dtype float32"):
        summarize_predictions(np.array([0.0, 1.0], dtype=np.float32), np.array([0, 1]), DIGITS)
