"""Every architecture in ARCHITECTURES through the stages after train, on real digits (600 train / 200 test):
evaluate, promote (a CNN challenger against a dense champion, with and without the champion's saved
predictions), report and predict. Resuming a killed run is tested per architecture in
tests/reliability/test_training_faults.py. A new architecture is covered here once it has small settings below."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tasks.common.architectures import ARCHITECTURES
from tasks.common.config import EvaluateParams, TrainParams, parse_params
from tasks.common.paths import DatasetPaths
from tasks.evaluate import evaluate_model
from tasks.lib.outputs import load_split
from tasks.lib.predictions import load_model
from tasks.promote import promote_model
from tasks.report import write_report
from tasks.train import train_model
from tasks.validate import validate_dataset
from tests.conftest import project_params_document
from tools.predict import predict_files

# Small enough to train in seconds; what matters is that each one goes through every stage.
SMALL = {"dense": {"dense": {"units": 32}}, "cnn": {"cnn": {"filters": (8, 16), "dense_units": 32}}}
DIGITS = tuple(str(digit) for digit in range(10))


def digits_params():
    document = project_params_document()
    document["data"]["mnist-sample"].update(expected_counts={"train": 600, "test": 200}, min_accuracy=0.5)
    return parse_params(document)


@pytest.fixture(scope="module")
def trained(real_digits_root, tmp_path_factory) -> dict[str, DatasetPaths]:
    """Per architecture, its own root with the real digits, a model trained for 3 epochs and evaluated."""
    assert set(SMALL) == set(ARCHITECTURES), "give the new architecture small settings in SMALL"
    params = digits_params()
    roots = {}
    for name in sorted(ARCHITECTURES):
        root = tmp_path_factory.mktemp(f"trained-{name}")
        for folder in ("data", "reports"):
            shutil.copytree(real_digits_root / folder, root / folder)
        paths = DatasetPaths(root, "mnist-sample")
        train_model(paths, TrainParams(model=name, **SMALL[name], epochs=3, threshold=1.0, learning_rate=0.003))
        validate_dataset(paths, params.dataset("mnist-sample"), params.validate_)
        evaluate_model(paths, params.dataset("mnist-sample"))
        roots[name] = paths
    return roots


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_evaluate_scores_each_architecture_as_keras_does(trained, name):
    paths = trained[name]
    images, labels = load_split(paths.processed_file("test"))
    keras_accuracy = float(np.mean(load_model(paths.model_file).predict(images, verbose=0).argmax(axis=1) == labels))

    metrics = evaluate_model(paths, digits_params().dataset("mnist-sample")).metrics

    assert metrics.test_accuracy == pytest.approx(keras_accuracy, abs=1 / 200)  # at most one image on a tie
    assert metrics.test_accuracy > 0.5  # chance is 0.1; 3 epochs on 600 digits


@pytest.mark.parametrize("saved_champion_predictions", [True, False], ids=["saved", "champion re-scored"])
def test_a_cnn_challenger_is_judged_against_a_dense_champion(trained, tmp_path, saved_champion_predictions):
    params = digits_params()
    dense, cnn = trained["dense"], trained["cnn"]
    paths = DatasetPaths(tmp_path, "mnist-sample")
    for folder in ("data", "reports", "models"):
        shutil.copytree(dense.root / folder, tmp_path / folder)
    champion = promote_model(paths, params.dataset("mnist-sample"), params.promote)
    assert champion.promoted
    if not saved_champion_predictions:  # as when the test set changed: promote runs the champion's model.onnx
        paths.production_predictions_file.unlink()
    for source, destination in [(cnn.model_file, paths.model_file), (cnn.runtime_model_file, paths.runtime_model_file),
                                (cnn.training_summary_file, paths.training_summary_file)]:
        shutil.copy2(source, destination)
    challenger = evaluate_model(paths, params.dataset("mnist-sample")).metrics

    decision = promote_model(paths, params.dataset("mnist-sample"), params.promote)

    assert decision.champion_accuracy == pytest.approx(champion.challenger_accuracy)
    assert decision.challenger_accuracy == pytest.approx(challenger.test_accuracy)
    production = paths.production_runtime_model_file.read_bytes()
    assert production == (cnn if decision.promoted else dense).runtime_model_file.read_bytes()
    assert paths.production_model_file.read_bytes() == (cnn if decision.promoted else dense).model_file.read_bytes()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_report_page_names_each_architecture(trained, name, tmp_path):
    params = digits_params()
    paths = DatasetPaths(tmp_path, "mnist-sample")
    for folder in ("data", "reports", "models"):
        shutil.copytree(trained[name].root / folder, tmp_path / folder)
    promote_model(paths, params.dataset("mnist-sample"), params.promote)

    write_report(paths, params.dataset("mnist-sample"), EvaluateParams(misclassified_shown=5))

    shown = dict(re.findall(r'data-metric="(\w+)">([^<]+)<', paths.report_file.read_text()))
    assert shown["model"] == name and shown["device"] == "CPU"


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_predict_classifies_image_files_with_each_architecture(trained, name, tmp_path):
    paths = trained[name]
    images, _ = load_split(paths.processed_file("test"))
    files = []
    for row in range(8):
        files.append(tmp_path / f"digit-{row}.png")
        Image.fromarray(np.round(images[row] * 255).astype(np.uint8)).save(files[-1])

    predictions = predict_files(paths.runtime_model_file, files, DIGITS)

    expected = load_model(paths.model_file).predict(images[:8], verbose=0)
    assert [prediction.top[0][0] for prediction in predictions] == [DIGITS[int(row.argmax())] for row in expected]
    assert [prediction.top[0][1] for prediction in predictions] == pytest.approx(expected.max(axis=1), abs=1e-5)
    assert all(len(prediction.top) == 3 and prediction.top[0][1] >= prediction.top[1][1] >= prediction.top[2][1]
               for prediction in predictions)
