"""Stage 4, drift: real Fashion-MNIST drops through the real ingest, compared with the champion's data."""

import json
import re
import shutil

import numpy as np
import pytest

from tasks.common.config import DriftParams, IngestParams, parse_params
from tasks.common.errors import ConfigError, DriftBlockedError
from tasks.common.paths import DatasetPaths
from tasks.drift import accept_drift, check_drift
from tasks.ingest import ingest_inbox
from tasks.lib.mnist_sample import build_mnist_sample
from tests.conftest import project_params_document, real_fashion_images, write_idx_dataset, write_image_folder

NAMES = project_params_document()["data"]["fashion-mnist"]["class_names"]
FOLDERS = [name.replace("/", "-") for name in NAMES]
BLOCK, WARN = DriftParams(action="block"), DriftParams(action="warn")
BAG = NAMES.index("Bag")


@pytest.fixture(scope="module")
def fashion():
    return real_fashion_images(8000, "train"), real_fashion_images(600, "test")


@pytest.fixture
def shop(tmp_path, fashion):
    """A dataset whose base is 1,000 train and 300 test real Fashion-MNIST images, and a champion that learned from
    exactly that base."""
    (train, test) = fashion
    paths = DatasetPaths(tmp_path, "shop")
    write_idx_dataset(paths.raw_dir, (train[0][:1000], train[1][:1000]), (test[0][:300], test[1][:300]))
    document = project_params_document()
    document["data"]["shop"] = {**document["data"]["fashion-mnist"], "expected_counts": None}
    dataset = parse_params(document).dataset("shop")
    crown(paths, dataset)
    return paths, dataset


def crown(paths, dataset):
    """Make the data as it is now the champion's, as promote does: its profile stored beside the model. The drift
    stage only checks that a champion model exists, so an empty file stands in for one (training is not tested)."""
    check_drift(paths, dataset, WARN)
    paths.production_dir.mkdir(parents=True, exist_ok=True)
    paths.production_model_file.write_bytes(b"")
    shutil.copy2(paths.data_profile_file, paths.production_profile_file)


def drop(paths, dataset, split, images, labels, prefix):
    write_image_folder(paths.inbox_dir, {split: (images, labels)}, FOLDERS, prefix=prefix)
    return ingest_inbox(paths, dataset, IngestParams(settle_seconds=0))


def bags(fashion, count):
    (train, _) = fashion
    rows = np.flatnonzero(train[1][1000:] == BAG)[:count] + 1000
    return train[0][rows], train[1][rows]


def test_without_a_champion_nothing_is_compared_and_the_profile_is_written(tmp_path, fashion):
    (train, test) = fashion
    paths = DatasetPaths(tmp_path, "new")
    write_idx_dataset(paths.raw_dir, (train[0][:200], train[1][:200]), (test[0][:50], test[1][:50]))
    document = project_params_document()
    dataset = parse_params(document).dataset("fashion-mnist")

    report = check_drift(paths, dataset, BLOCK)

    assert not report.drifted and not report.blocked and report.measures == []
    assert report.outcome == "no drift check: no champion yet: nothing to compare with"
    assert json.loads(paths.data_profile_file.read_text())["parts"][0]["splits"]["train"]["images"] == 200
    assert json.loads(paths.drift_file.read_text())["outcome"] == report.outcome


def test_more_images_like_the_champions_are_no_drift(shop, fashion):
    paths, dataset = shop
    (train, test) = fashion
    drop(paths, dataset, "train", train[0][1000:1400], train[1][1000:1400], "a")

    report = check_drift(paths, dataset, BLOCK)

    assert not report.drifted and report.images == {"train": 1400, "test": 300}
    assert report.reference_images == {"train": 1000, "test": 300} and len(report.parts) == 2
    assert report.outcome.startswith("no drift from the data the champion learned from (base)")


def test_a_drop_of_one_class_blocks_naming_the_measure_its_value_and_the_threshold(shop, fashion):
    paths, dataset = shop
    drop(paths, dataset, "train", *bags(fashion, 300), "bag")
    profile_before = paths.data_profile_file.read_bytes()

    with pytest.raises(DriftBlockedError) as raised:
        check_drift(paths, dataset, BLOCK)

    message = str(raised.value)
    assert "train labels: Jensen-Shannon distance 0." in message and "> drift.max_label_js_distance 0.1 (300 new images" in message
    assert "(drift.action: block). The data is versioned but not trained on" in message
    assert "make accept-drift DATASET=shop REASON=" in message and "\n" not in message
    written = json.loads(paths.drift_file.read_text())
    assert written["blocked"] and written["outcome"] == message
    assert paths.data_profile_file.read_bytes() != profile_before  # the profile of the data now, with the drop

    warned = check_drift(paths, dataset, WARN)
    assert warned.drifted and not warned.blocked and "(drift.action: warn, so training goes ahead)" in warned.outcome


def test_an_accepted_drift_trains_a_like_drop_passes_and_a_new_drift_blocks_again(shop, fashion):
    paths, dataset = shop
    drop(paths, dataset, "train", *bags(fashion, 300), "bag")
    with pytest.raises(DriftBlockedError):
        check_drift(paths, dataset, BLOCK)

    acceptance = accept_drift(paths, dataset, BLOCK, "the shop now sells mostly bags", by="ana")
    accepted = check_drift(paths, dataset, BLOCK)

    assert acceptance.parts == accepted.parts and acceptance.measures[0]["statistic"] == "labels"
    assert accepted.drifted and not accepted.blocked
    assert accepted.accepted["reason"] == "the shop now sells mostly bags" and accepted.accepted["by"] == "ana"
    assert "accepted on " in accepted.outcome and "by ana: the shop now sells mostly bags" in accepted.outcome
    stored = json.loads(paths.drift_acceptance_file.read_text())
    assert stored["reason"] == "the shop now sells mostly bags" and stored["profile"]["parts"][-1]["part"] == \
        accepted.parts[-1]

    more_bags = tuple(array[300:340] for array in bags(fashion, 340))
    drop(paths, dataset, "train", *more_bags, "more")
    assert check_drift(paths, dataset, BLOCK).accepted is not None  # like the accepted data: still passes

    digits = build_mnist_sample()
    drop(paths, dataset, "train", digits[("train", "images")][:1500], digits[("train", "labels")][:1500], "digit")
    # 1,840 images are new since the champion (300 + 40 bags, 1,500 digits), 1,540 since the accepted data
    with pytest.raises(DriftBlockedError, match=r"train mean intensity: PSI \d\.\d+ > drift\.max_pixel_psi 0\.2 \(1840 new.*The acceptance of .* by ana does not cover this data: it drifted from the accepted data too \(train labels: .*\(1540 new images"):
        check_drift(paths, dataset, BLOCK)


def test_accepting_needs_a_reason_and_a_drift(shop, fashion):
    paths, dataset = shop
    (train, _) = fashion
    drop(paths, dataset, "train", train[0][1000:1200], train[1][1000:1200], "a")

    with pytest.raises(ConfigError, match=r"accept-drift needs a reason"):
        accept_drift(paths, dataset, BLOCK, "  ")
    with pytest.raises(ConfigError, match=r"shop: nothing to accept: the data \(base \+ 1 drop\(s\), latest .*\) "
                                          r"has no drift from the data the champion learned from \(base\)"):
        accept_drift(paths, dataset, BLOCK, "looks fine")
    assert not paths.drift_acceptance_file.exists()


def test_a_champion_of_other_classes_is_no_reference(shop):
    paths, dataset = shop
    renamed = dataset.model_copy(update={"class_names": tuple(f"class {index}" for index in range(10))})

    report = check_drift(paths, renamed, BLOCK)

    assert not report.blocked and report.measures == []
    assert "the champion's data profile (" in report.outcome and "has classes ['T-shirt/top'" in report.outcome
    assert report.outcome.endswith("nothing to compare with until the next promotion")


def test_an_acceptance_of_another_profile_version_is_ignored_and_the_block_says_why(shop, fashion):
    paths, dataset = shop
    drop(paths, dataset, "train", *bags(fashion, 300), "bag")
    with pytest.raises(DriftBlockedError):
        check_drift(paths, dataset, BLOCK)
    accept_drift(paths, dataset, BLOCK, "bags are fine", by="ana")
    stored = json.loads(paths.drift_acceptance_file.read_text())
    stored["profile"]["profile_version"] = 0
    paths.drift_acceptance_file.write_text(json.dumps(stored))

    with pytest.raises(DriftBlockedError, match=r"The acceptance of .* by ana does not apply: its data profile has "
                                                r"profile version 0 with 50 bins, where version 1 with 50 bins is read"):
        check_drift(paths, dataset, BLOCK)

    paths.drift_acceptance_file.write_text('{"reason": "hand-written"}')
    with pytest.raises(DriftBlockedError, match=r"The acceptance on file \(.*accepted.json\) is not one `make "
                                                r"accept-drift` writes"):
        check_drift(paths, dataset, BLOCK)


def test_an_unreadable_champion_profile_means_no_check_with_the_reason_not_a_failure(shop):
    paths, dataset = shop
    paths.production_profile_file.write_text("{not json")

    report = check_drift(paths, dataset, BLOCK)

    assert report.measures == [] and not report.blocked
    assert "the champion's data profile (" in report.outcome and "is not a JSON object (found str)" in report.outcome


def test_a_drop_turned_90_degrees_drifts_in_what_the_images_show_though_labels_and_pixels_stay(shop, fashion):
    """Issue 30 item 2: 200 + 40 digits turned 90 degrees were not reported, every measure at or below 0.002
    (labels, mean intensity and ink area do not change when an image turns)."""
    paths, dataset = shop
    (train, test) = fashion
    drop(paths, dataset, "train", np.rot90(train[0][1000:1200], axes=(1, 2)), train[1][1000:1200], "turned")
    drop(paths, dataset, "test", np.rot90(test[0][300:340], axes=(1, 2)), test[1][300:340], "turned")

    report = check_drift(paths, dataset, WARN)

    drifted = {(row["split"], row["statistic"]) for row in report.measures if row["drifted"]}
    assert drifted == {("train", "images"), ("test", "images")}, report.measures
    (row,) = [row for row in report.measures if (row["split"], row["statistic"]) == ("train", "images")]
    assert row["value"] > 0.95 and row["new_images"] == 200
    assert re.search(r"train images: classifier AUC 0\.9\d+ > drift\.max_classifier_auc 0\.85 \(200 new images in "
                     r"drop \d{8}T\d{6}Z-[0-9a-f]{8}, Mann-Whitney p = ", report.outcome), report.outcome


def test_a_drop_of_another_kind_of_image_drifts_and_one_like_the_champions_does_not(shop, fashion):
    paths, dataset = shop
    (train, _) = fashion
    drop(paths, dataset, "train", train[0][1000:1100], train[1][1000:1100], "like")  # 100 more: no drift
    like = check_drift(paths, dataset, BLOCK)
    digits = build_mnist_sample()  # digits filed under the clothes' classes, 20 of each
    labels = digits[("train", "labels")][:200]
    drop(paths, dataset, "train", digits[("train", "images")][:200], labels, "digit")

    with pytest.raises(DriftBlockedError, match=r"train images: classifier AUC 0\.9\d+ > drift\.max_classifier_auc"):
        check_drift(paths, dataset, BLOCK)
    images_row = [row for row in like.measures if row["statistic"] == "images" and row["split"] == "train"]
    assert not like.drifted and images_row[0]["value"] < 0.75 and images_row[0]["new_images"] == 100
