"""tasks/lib/expectations.py, called directly: the per-image summary table, and a real Great Expectations run of
the suite on small generated splits (60 images of 28x28 uint8, labels 0..9).

The stage tests (tests/tasks/test_validate.py) check the failure *messages* validate_dataset builds from these
results; here the result records themselves are checked: which expectation fails, how many rows and which ones
(at most `rows_shown`), the values found, that they are plain JSON, and the Data Docs run_suite writes. One
suite run over many splits is shared by the module (GX takes ~0.3 s per split).
"""

import html
import json
import re

import numpy as np
import pytest

from tasks.lib.expectations import build_expectations, run_suite, summarize_images
from tests.conftest import make_images

ROWS_SHOWN = 3
EXPECTED = 60
ALL_DESCRIPTIONS = ["image height is 28", "image width is 28", "pixels are uint8", "pixel min >= 0",
                    "pixel max <= 255", "no all-blank image", "label is an integer in 0..9", "all 10 classes present",
                    "class balance: each class's share within 10 % x (1 +/- 0.5)", "60 images"]


def _bad_labels():
    images, labels = make_images(EXPECTED)
    labels[[3, 7, 11, 13, 19]] = [10, 255, 12, 10, 10]  # five out of range; 255 and 12 are singletons
    return images, labels


def _missing_class():
    images, labels = make_images(EXPECTED)
    labels[9::10] = [0, 1, 2, 3, 4, 5]  # no 9 left; every class still within the balance tolerance
    return images, labels


def _blank():
    images, labels = make_images(EXPECTED)
    images[[17, 42]] = 0
    return images, labels


def _float_pixels():
    images, labels = make_images(EXPECTED)
    return images.astype(np.float32), labels


def _flat():
    images, labels = make_images(EXPECTED)
    return images.reshape(EXPECTED, 28 * 28), labels  # 2-D: one row of 784 pixels per image


SPLITS = {  # name: (images, labels), expected row count
    "good": (make_images(EXPECTED), EXPECTED),
    "bad-labels": (_bad_labels(), EXPECTED),
    "missing-class": (_missing_class(), EXPECTED),
    "blank": (_blank(), EXPECTED),
    "short": (make_images(50), EXPECTED),
    "uncounted": (make_images(50), None),
    "float": (_float_pixels(), EXPECTED),
    "flat": (_flat(), EXPECTED),
}


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """One run_suite call over every split of SPLITS; returns (results, docs_dir)."""
    docs_dir = tmp_path_factory.mktemp("suite") / "data_docs"
    summaries = {name: summarize_images(*arrays) for name, (arrays, _) in SPLITS.items()}
    expectations = {name: build_expectations(10, expected, 0.5) for name, (_, expected) in SPLITS.items()}
    return run_suite(summaries, expectations, docs_dir, ROWS_SHOWN), docs_dir


def _failed(results, split):
    return {result["description"]: result for result in results[split] if not result["success"]}


def test_a_good_split_meets_every_expectation(suite_run):
    results, _ = suite_run

    assert [result["description"] for result in results["good"]] == ALL_DESCRIPTIONS
    assert all(result["success"] for result in results["good"]), _failed(results, "good")
    by_description = {result["description"]: result for result in results["good"]}
    assert by_description["60 images"]["observed_value"] == 60
    assert by_description["no all-blank image"]["element_count"] == 60


def test_labels_out_of_range_name_at_most_rows_shown_rows_and_their_values(suite_run):
    results, _ = suite_run

    failed = _failed(results, "bad-labels")

    assert set(failed) == {"label is an integer in 0..9",
                           "class balance: each class's share within 10 % x (1 +/- 0.5)"}
    in_set = failed["label is an integer in 0..9"]
    assert (in_set["expectation"], in_set["column"]) == ("expect_column_values_to_be_in_set", "label")
    assert (in_set["unexpected_count"], in_set["element_count"]) == (5, 60)
    assert in_set["example_rows"] == [3, 7, 11]  # ROWS_SHOWN of the five
    assert in_set["example_values"] == [10, 255, 12]
    balance = failed["class balance: each class's share within 10 % x (1 +/- 0.5)"]
    assert balance["example_rows"] == [7, 11]  # 1 of 60 is below 5 %; label 10's 3 of 60 is exactly 5 %
    assert balance["example_values"] == [pytest.approx(1 / 60)] * 2


def test_a_missing_class_is_named_as_missing(suite_run):
    results, _ = suite_run

    failed = _failed(results, "missing-class")

    assert list(failed) == ["all 10 classes present"]
    assert failed["all 10 classes present"]["expectation"] == "expect_column_distinct_values_to_contain_set"
    assert failed["all 10 classes present"]["missing_values"] == [9]
    assert failed["all 10 classes present"]["example_rows"] == []


def test_a_blank_image_is_named_by_row(suite_run):
    results, _ = suite_run

    failed = _failed(results, "blank")

    assert list(failed) == ["no all-blank image"]
    blank = failed["no all-blank image"]
    assert blank["column"] == "inked_pixels"
    assert (blank["unexpected_count"], blank["example_rows"], blank["example_values"]) == (2, [17, 42], [0, 0])


def test_a_wrong_row_count_fails_only_the_row_count_and_reports_what_was_found(suite_run):
    results, _ = suite_run

    failed = _failed(results, "short")

    assert list(failed) == ["60 images"]
    count = failed["60 images"]
    assert (count["expectation"], count["column"], count["observed_value"]) == (
        "expect_table_row_count_to_equal", None, 50)


def test_without_an_expected_row_count_there_is_no_row_count_expectation(suite_run):
    results, _ = suite_run

    assert [result["description"] for result in results["uncounted"]] == ALL_DESCRIPTIONS[:-1]
    assert all(result["success"] for result in results["uncounted"])
    assert {result["element_count"] for result in results["uncounted"]
            if result["expectation"] == "expect_column_values_to_be_between"} == {50}


def test_pixels_other_than_uint8_fail_the_dtype_expectation(suite_run):
    results, _ = suite_run

    failed = _failed(results, "float")

    assert list(failed) == ["pixels are uint8"]
    assert failed["pixels are uint8"]["unexpected_count"] == 60
    assert failed["pixels are uint8"]["example_values"] == ["float32"] * ROWS_SHOWN


def test_flat_images_fail_height_and_width(suite_run):
    results, _ = suite_run

    failed = _failed(results, "flat")

    assert set(failed) == {"image height is 28", "image width is 28"}
    assert failed["image height is 28"]["example_values"] == [784] * ROWS_SHOWN
    assert failed["image width is 28"]["example_values"] == [1] * ROWS_SHOWN


def test_results_are_plain_json(suite_run):
    """The stage writes them into validation.json: NumPy scalars must have become Python numbers."""
    results, _ = suite_run

    assert json.loads(json.dumps(results)) == results


def _page_text(path):
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", path.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_data_docs_have_an_index_and_one_validation_page_per_split_with_its_status(suite_run):
    _, docs_dir = suite_run

    assert (docs_dir / "index.html").is_file()
    pages = {page.name: page for page in (docs_dir / "validations").rglob("*.html")}
    assert sorted(pages) == sorted(f"images-{name}.html" for name in SPLITS)
    good = _page_text(pages["images-good.html"])
    assert "Status: Succeeded" in good and "Unsuccessful Expectations 0" in good
    bad = _page_text(pages["images-bad-labels.html"])
    assert "Status: Failed" in bad and "Unsuccessful Expectations 2" in bad
    index = (docs_dir / "index.html").read_text()
    assert all(f"{name}-images" in index for name in SPLITS)


def test_a_second_run_in_the_same_process_starts_from_a_fresh_context(suite_run, tmp_path):
    """The Prefect flow validates several datasets in one process: split names are reused, docs are not shared."""
    images, labels = make_images(EXPECTED, seed=5)
    images[0] = 0

    results = run_suite({"good": summarize_images(images, labels)}, {"good": build_expectations(10, EXPECTED, 0.5)},
                        tmp_path / "docs", rows_shown=5)

    assert list(_failed(results, "good")) == ["no all-blank image"]
    assert _failed(results, "good")["no all-blank image"]["example_rows"] == [0]
    pages = sorted(page.name for page in (tmp_path / "docs" / "validations").rglob("*.html"))
    assert pages == ["images-good.html"]


def test_build_expectations_turns_the_tolerance_into_share_bounds():
    balance = {expectation.description: expectation
               for expectation in build_expectations(10, None, 0.2)}["class balance: each class's share within "
                                                                  "10 % x (1 +/- 0.2)"]

    assert (balance.min_value, balance.max_value) == (pytest.approx(0.08), pytest.approx(0.12))


def test_summarize_flat_images_and_out_of_range_labels():
    images = np.zeros((4, 784), dtype=np.uint8)
    images[:, 0] = [0, 1, 2, 3]
    labels = np.array([255, 255, 3, 12], dtype=np.uint8)

    summary = summarize_images(images, labels)

    assert summary["height"].tolist() == [784] * 4 and summary["width"].tolist() == [1] * 4
    assert summary["inked_pixels"].tolist() == [0, 1, 1, 1]
    assert summary["label"].tolist() == [255, 255, 3, 12]
    assert summary["label_share"].tolist() == [0.5, 0.5, 0.25, 0.25]


def test_summarize_an_empty_split_gives_an_empty_table():
    """An IDX file of 0 images parses (shape (0, 28, 28)); the suite then reports "found 0" for the row count
    and the missing classes. `max(count, 1)` in summarize_images shows an empty split is meant to summarize."""
    summary = summarize_images(np.zeros((0, 28, 28), dtype=np.uint8), np.zeros(0, dtype=np.uint8))

    assert len(summary) == 0
    assert list(summary.columns) == ["row", "height", "width", "dtype", "pixel_min", "pixel_max", "inked_pixels",
                                     "label", "label_share"]
