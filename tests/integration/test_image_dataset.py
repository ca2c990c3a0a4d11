"""A dataset of the user's own: any name, three classes, real photos-as-files, through every stage function."""

import numpy as np
import pytest

from tasks.common.config import parse_params
from tasks.common.paths import DatasetPaths
from tests.conftest import project_params_document, real_fashion_images, write_image_folder

pytestmark = pytest.mark.integration
SHOES = ["Sandal", "Sneaker", "Ankle boot"]  # Fashion-MNIST's classes 5, 7 and 9


def shoe_images(count: int, split: str):
    images, labels = real_fashion_images(count * 4, split)
    keep = np.isin(labels, [5, 7, 9])
    return images[keep][:count], np.searchsorted([5, 7, 9], labels[keep][:count]).astype(np.uint8)


def test_a_three_class_image_folder_dataset_trains_evaluates_promotes_and_reports(tmp_path):
    from tasks.download import download_dataset
    from tasks.drift import check_drift
    from tasks.evaluate import evaluate_model
    from tasks.normalize import normalize_dataset
    from tasks.promote import promote_model
    from tasks.report import write_report
    from tasks.train import train_model
    from tasks.validate import validate_dataset

    write_image_folder(tmp_path / "photos", {"train": shoe_images(600, "train")}, SHOES, suffix=".jpg")
    write_image_folder(tmp_path / "photos", {"test": shoe_images(150, "test")}, ["0", "1", "2"])  # index folders
    document = project_params_document()
    document["data"]["shoes_2026"] = {"source": "images", "local_dir": str(tmp_path / "photos"), "mirrors": [],
                                      "class_names": SHOES, "expected_counts": None, "threshold": 0.9,
                                      "min_accuracy": 0.8, "framing": "box", "train": {"epochs": 8}}
    document["datasets"] = ["shoes_2026"]
    params = parse_params(document)
    dataset, paths = params.dataset("shoes_2026"), DatasetPaths(tmp_path, "shoes_2026")

    download_dataset(paths, dataset, params.download)
    report = validate_dataset(paths, dataset, params.validate_)
    drift = check_drift(paths, dataset, params.drift)
    normalize_dataset(paths)
    training = train_model(paths, params.train_for("shoes_2026"))
    evaluation = evaluate_model(paths, dataset)
    decision = promote_model(paths, dataset, params.promote)
    page = write_report(paths, dataset, params.evaluate)

    assert report.image_counts == {"train": 600, "test": 150}
    assert training.summary.params["num_classes"] == 3
    scores = evaluation.class_scores
    assert evaluation.metrics.test_accuracy > 0.85 and np.array(scores.confusion_matrix).shape == (3, 3)
    assert set(scores.per_class) == set(SHOES)
    assert decision.promoted and paths.production_model_file.exists()
    assert "Ankle boot" in page.read_text()
    assert drift.outcome.startswith("no drift check: no champion yet") and 'data-drift="unchecked"' in page.read_text()
    # the champion keeps the profile of the data it learned from: the next drift check's reference
    assert paths.production_profile_file.read_bytes() == paths.data_profile_file.read_bytes()
