import json

import numpy as np
import pytest

from tasks.evaluate import evaluate_model

DIGITS = tuple(str(digit) for digit in range(10))


def test_evaluate_writes_metrics_plots_and_predictions(trained_digits, project_params):
    result = evaluate_model(trained_digits, project_params.dataset("mnist-sample"))

    metrics = json.loads(trained_digits.metrics_file.read_text())
    class_scores = json.loads(trained_digits.class_scores_file.read_text())
    accuracy = result.metrics.test_accuracy
    assert metrics["test_accuracy"] == pytest.approx(accuracy) and 0.5 < accuracy <= 1
    assert metrics["stop_epoch"] == 3 and metrics["test_images"] == 200
    # The DVC metrics file holds the numbers a person compares, nothing else (issue 16: 3,501-character lines)
    assert set(metrics) == {"test_accuracy", "test_loss", "stop_epoch", "test_images"}
    assert all(isinstance(value, (int, float)) for value in metrics.values())
    assert np.array(class_scores["confusion_matrix"]).shape == (10, 10)
    assert np.array(class_scores["confusion_matrix"]).sum() == 200
    correct = np.trace(np.array(class_scores["confusion_matrix"]))
    assert correct / 200 == pytest.approx(accuracy, abs=1e-6)
    assert set(class_scores["per_class"]) == set(DIGITS)
    assert trained_digits.predictions_file.read_text().splitlines()[0] == "actual,predicted"
    assert len(trained_digits.predictions_file.read_text().splitlines()) == 201


def test_evaluate_saves_the_models_probabilities_for_promote_and_report(trained_digits, project_params):
    from tasks.lib.predictions import load_model, load_probabilities, test_set_fingerprint
    from tasks.lib.outputs import load_split

    evaluate_model(trained_digits, project_params.dataset("mnist-sample"))
    images, labels = load_split(trained_digits.processed_file("test"))

    saved = load_probabilities(trained_digits.test_predictions_file, test_set_fingerprint(images, labels))

    expected = load_model(trained_digits.model_file).predict(images, verbose=0)  # Keras itself
    assert saved.shape == (200, 10) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, expected, rtol=0, atol=1e-5)
    assert np.array_equal(np.load(trained_digits.test_predictions_file)["predicted"], saved.argmax(axis=1))
