import json

import numpy as np
import pytest

from tasks.lib import idx
from tasks.common.config import ValidateParams
from tasks.common.errors import DataValidationError
from tasks.lib.expectations import summarize_images
from tasks.validate import ValidationReport, validate_dataset
from tests.chromium import run_chromium
from tests.conftest import make_images, write_idx_dataset


def _write(paths, train, test=None):
    """Replace the raw IDX files of `paths` with `train` (and `test`, default: the tiny_dataset test split)."""
    write_idx_dataset(paths.raw_dir, train, test if test is not None else make_images(20, seed=2))


def _validate(paths, custom_params, tolerance=0.5, **dataset_updates):
    dataset = custom_params.dataset("custom")
    if dataset_updates:
        dataset = dataset.model_copy(update=dataset_updates)
    return validate_dataset(paths, dataset, ValidateParams(class_balance_tolerance=tolerance))


def _validation_error(paths, custom_params, **kwargs) -> str:
    with pytest.raises(DataValidationError) as raised:
        _validate(paths, custom_params, **kwargs)
    return str(raised.value)


def _line(message: str, description: str) -> str:
    """The one line of the error message that reports the expectation described by `description`."""
    lines = [line for line in message.splitlines() if description in line]
    assert len(lines) == 1, f"expected one line with {description!r} in:\n{message}"
    return lines[0]


def _tree_bytes(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_valid_dataset_passes_and_publishes_report_and_data_docs(tiny_dataset, custom_params):
    report = _validate(tiny_dataset, custom_params)

    assert report == ValidationReport("custom", True, {"train": 60, "test": 20}, [], tiny_dataset.validation_file)
    document = json.loads(tiny_dataset.validation_file.read_text())
    assert document["success"] is True
    assert document["image_counts"] == {"train": 60, "test": 20}
    assert all(result["success"] for split in ("train", "test") for result in document["splits"][split])
    assert len(document["splits"]["train"]) == 10  # nine column expectations + the row count
    assert (tiny_dataset.data_docs_dir / "index.html").is_file()
    assert _validation_pages(tiny_dataset.data_docs_dir) == ["images-test.html", "images-train.html"]
    # Nothing else is left in the reports folder: no failure report, no scratch or swap folders.
    assert sorted(path.name for path in tiny_dataset.reports_dir.iterdir()) == ["data_docs", "validation.json"]


def test_labels_outside_0_to_9_name_labels_file_and_rows(tiny_dataset, custom_params):
    images, labels = make_images(60, seed=1)
    labels[3], labels[7] = 10, 255
    _write(tiny_dataset, (images, labels))

    message = _validation_error(tiny_dataset, custom_params)

    line = _line(message, "label is an integer in 0..9")
    assert line.startswith(f"  - {tiny_dataset.raw_file('train', 'labels')} [train]: ")
    assert "2 of 60 rows, e.g. rows [3, 7] with values [10, 255]" in line


def test_all_blank_image_names_images_file_and_row(tiny_dataset, custom_params):
    images, labels = make_images(60, seed=1)
    images[17] = 0
    images[42] = 0
    _write(tiny_dataset, (images, labels))

    message = _validation_error(tiny_dataset, custom_params)

    assert "1 of 20 expectations failed" in message
    line = _line(message, "no all-blank image")
    assert line.startswith(f"  - {tiny_dataset.raw_file('train', 'images')} [train]: ")
    assert "2 of 60 rows, e.g. rows [17, 42] with values [0, 0]" in line


def test_missing_class_fails_all_classes_present(tiny_dataset, custom_params):
    images, labels = make_images(60, seed=1)
    labels[9::10] = [0, 1, 2, 3, 4, 5]  # no 9 left; every other class still within the balance tolerance
    _write(tiny_dataset, (images, labels))

    message = _validation_error(tiny_dataset, custom_params)

    assert "1 of 20 expectations failed" in message
    line = _line(message, "all 10 classes present")
    assert line.startswith(f"  - {tiny_dataset.raw_file('train', 'labels')} [train]: ")
    assert "expect_column_distinct_values_to_contain_set on label" in line


def test_images_not_28_by_28_name_images_file(tiny_dataset, custom_params):
    images, labels = make_images(20, seed=2)
    _write(tiny_dataset, make_images(60, seed=1), (np.ascontiguousarray(images[:, :27, :]), labels))

    message = _validation_error(tiny_dataset, custom_params)

    assert "1 of 20 expectations failed" in message
    line = _line(message, "image height is 28")
    assert line.startswith(f"  - {tiny_dataset.raw_file('test', 'images')} [test]: ")
    assert "20 of 20 rows, e.g. rows [0, 1, 2, 3, 4] with values [27, 27, 27, 27, 27]" in line
    assert "image width is 28" not in message


def test_row_count_differs_from_expected_counts(tiny_dataset, custom_params):
    _write(tiny_dataset, make_images(50, seed=1))

    message = _validation_error(tiny_dataset, custom_params)

    line = _line(message, "60 images")
    images_file, labels_file = tiny_dataset.raw_file("train", "images"), tiny_dataset.raw_file("train", "labels")
    assert line.startswith(f"  - {images_file} + {labels_file.name} [train]: ")
    assert "expect_table_row_count_to_equal" in line
    assert line.endswith(": found 50")


def test_without_expected_counts_any_row_count_passes(tiny_dataset, custom_params):
    _write(tiny_dataset, make_images(50, seed=1))

    report = _validate(tiny_dataset, custom_params, expected_counts=None)

    assert report.success and report.image_counts == {"train": 50, "test": 20}


def test_class_balance_outside_tolerance(tiny_dataset, custom_params):
    images, labels = make_images(60, seed=1)
    labels[[1, 2]] = 0  # class 0: 8 of 60 (13.3 %); classes 1 and 2: 5 of 60 (8.3 %)
    _write(tiny_dataset, (images, labels))

    message = _validation_error(tiny_dataset, custom_params, tolerance=0.2)  # each share must be in 8 % .. 12 %

    assert "1 of 20 expectations failed" in message
    line = _line(message, "class balance: each class's share within 10 % x (1 +/- 0.2)")
    assert line.startswith(f"  - {tiny_dataset.raw_file('train', 'labels')} [train]: ")
    assert "8 of 60 rows, e.g. rows [0, 1, 2, 10, 20] with values [0.1333" in line
    # The same data passes with the default tolerance (5 % .. 15 %).
    assert _validate(tiny_dataset, custom_params, tolerance=0.5).success


def test_image_and_label_counts_differ(tiny_dataset, custom_params):
    images, labels = make_images(60, seed=1)
    _write(tiny_dataset, (images, labels[:59]))

    message = _validation_error(tiny_dataset, custom_params)

    images_file, labels_file = tiny_dataset.raw_file("train", "images"), tiny_dataset.raw_file("train", "labels")
    assert f"{images_file} holds 60 images but {labels_file} holds 59 labels" in message
    assert not tiny_dataset.validation_file.exists()


def test_two_failed_expectations_are_listed_in_one_message(tiny_dataset, custom_params):
    train_images, train_labels = make_images(60, seed=1)
    train_images[5] = 0
    _write(tiny_dataset, (train_images, train_labels), make_images(19, seed=2))

    message = _validation_error(tiny_dataset, custom_params)

    assert message.startswith("data validation failed for custom: 2 of 20 expectations failed:\n")
    blank = _line(message, "no all-blank image")
    assert blank.startswith(f"  - {tiny_dataset.raw_file('train', 'images')} [train]: ")
    assert "rows [5]" in blank
    count = _line(message, "20 images")
    assert count.startswith(f"  - {tiny_dataset.raw_file('test', 'images')} + t10k-labels-idx1-ubyte [test]: ")
    assert count.endswith(": found 19")
    failed_dir = tiny_dataset.reports_dir / "failed_validation"
    assert f"Full report: {failed_dir / 'validation.json'}" in message


def test_failed_validation_keeps_last_good_report_and_writes_failure_report(tiny_dataset, custom_params):
    _validate(tiny_dataset, custom_params)
    good_json = tiny_dataset.validation_file.read_bytes()
    good_docs = _tree_bytes(tiny_dataset.data_docs_dir)
    assert good_docs
    images, labels = make_images(60, seed=1)
    bad_labels = labels.copy()
    bad_labels[4] = 10
    tiny_dataset.raw_file("train", "labels").write_bytes(idx.encode_idx(bad_labels))

    message = _validation_error(tiny_dataset, custom_params)

    assert "rows [4] with values [10]" in _line(message, "label is an integer in 0..9")
    assert tiny_dataset.validation_file.read_bytes() == good_json
    assert _tree_bytes(tiny_dataset.data_docs_dir) == good_docs
    failed_dir = tiny_dataset.reports_dir / "failed_validation"
    failed = json.loads((failed_dir / "validation.json").read_text())
    assert failed["success"] is False
    assert failed["image_counts"] == {"train": 60, "test": 20}
    label_result = next(result for result in failed["splits"]["train"]
                        if result["description"] == "label is an integer in 0..9")
    assert label_result["success"] is False and label_result["example_rows"] == [4]
    assert (failed_dir / "data_docs" / "index.html").is_file()
    assert _validation_pages(failed_dir / "data_docs") == ["images-test.html", "images-train.html"]

    # Once the data is fixed, the next good run replaces the report and removes the stale failure report.
    _write(tiny_dataset, (images, labels))
    assert _validate(tiny_dataset, custom_params).success
    assert not failed_dir.exists()
    assert json.loads(tiny_dataset.validation_file.read_text())["success"] is True


def test_summarize_images_one_row_per_image():
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    images[1, 5, 6] = 7  # one inked pixel
    images[2] = 2  # every pixel inked
    images[2, 10, 10], images[2, 27, 27] = 30, 255
    labels = np.array([4, 4, 9], dtype=np.uint8)

    summary = summarize_images(images, labels)

    assert list(summary.columns) == ["row", "height", "width", "dtype", "pixel_min", "pixel_max", "inked_pixels",
                                     "label", "label_share"]
    assert summary.to_dict("list") == {
        "row": [0, 1, 2],
        "height": [28, 28, 28],
        "width": [28, 28, 28],
        "dtype": ["uint8", "uint8", "uint8"],
        "pixel_min": [0, 0, 2],
        "pixel_max": [0, 7, 255],
        "inked_pixels": [0, 1, 784],
        "label": [4, 4, 9],
        "label_share": [pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(1 / 3)],
    }


def _validation_pages(docs_dir):
    """The Data Docs pages of validation runs, one per split."""
    return sorted(page.name for page in (docs_dir / "validations").rglob("*.html"))


def test_a_grown_dataset_is_judged_against_its_base_minimum_counts_and_its_own_class_balance(tiny_dataset,
                                                                                            custom_params):
    """The base is 60 train / 20 test, 10 % per class, expected_counts 60 / 20. A drop may add images (the count
    becomes a minimum) and shift class shares within the tolerance of the base's own; one that makes a class
    three times as common as in the base is refused, naming the rule."""
    from tasks.common.config import IngestParams
    from tasks.ingest import ingest_inbox
    from tests.conftest import write_image_folder

    folders = [str(label) for label in range(10)]
    even = make_images(20, seed=7)  # two per class
    write_image_folder(tiny_dataset.inbox_dir, {"train": even}, folders)
    ingest_inbox(tiny_dataset, custom_params.dataset("custom"), IngestParams(settle_seconds=0))

    grown = _validate(tiny_dataset, custom_params, tolerance=0.5)

    skewed = make_images(40, seed=8)
    write_image_folder(tiny_dataset.inbox_dir, {"train": (skewed[0], np.full(40, 3, np.uint8))}, folders, prefix="b")
    ingest_inbox(tiny_dataset, custom_params.dataset("custom"), IngestParams(settle_seconds=0))
    message = _validation_error(tiny_dataset, custom_params, tolerance=0.5)

    assert grown.image_counts == {"train": 80, "test": 20}  # more than expected_counts: a minimum now
    line = _line(message, "class balance: each class's share within (1 +/- 0.5) x its share in the dataset's base")
    assert line.startswith(f"  - {tiny_dataset.raw_file('train', 'labels')} and 2 drop(s) in "
                           f"{tiny_dataset.ingested_dir} [train]: class balance")
    assert "rows" in line and "of 120 rows" in line


# Run in the Data Docs index once loaded: did the vendored scripts and styles load and fill the validations table?
DOCS_PROBE = """<script>window.addEventListener("load", () => setTimeout(() => {
  const found = {jquery: typeof window.jQuery, bootstrapTable: typeof (window.jQuery && jQuery.fn.bootstrapTable),
                 vegaEmbed: typeof window.vegaEmbed, bodyMargin: getComputedStyle(document.body).margin,
                 tables: document.querySelectorAll(".bootstrap-table").length,
                 rows: document.querySelectorAll(".bootstrap-table tbody tr[data-index]").length};
  const output = document.createElement("pre");
  output.id = "probe";
  output.textContent = JSON.stringify(found);
  document.body.appendChild(output);
}, 500));</script>"""


@pytest.mark.integration
def test_data_docs_work_offline(tiny_dataset, custom_params, tmp_path):
    """Issue 16: offline, the Data Docs index rendered unstyled and listed no validations (its scripts and styles
    came from CDNs). Chromium here resolves no host name: what renders comes from the Data Docs folder."""
    import html
    import re

    _validate(tiny_dataset, custom_params)
    index = tiny_dataset.data_docs_dir / "index.html"
    pages = list(tiny_dataset.data_docs_dir.rglob("*.html"))
    for page in pages:
        assert not re.search(r'<(script|img)[^>]*src="https?://|<link[^>]*href="https?://', page.read_text()), page
    probed = index.with_name("probed.html")
    probed.write_text(index.read_text().replace("</body>", DOCS_PROBE + "</body>"))

    dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], tmp_path / "profile")
    found = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))

    assert found["jquery"] == "function" and found["bootstrapTable"] == "function", found
    assert found["vegaEmbed"] == "function", found
    assert found["bodyMargin"] == "0px", found  # Bootstrap's reboot, not the browser's 8 px
    assert found["tables"] >= 1 and found["rows"] >= 2, found  # the train and test validations are listed


def test_data_docs_are_the_same_bytes_for_the_same_data_and_name_the_data_they_read(tiny_dataset, custom_params):
    """The Data Docs are a DVC output: GX's wall-clock stamps and uuid4 ids made every rerun change dvc.lock, so a
    fresh clone's `make run` left `git status` dirty (issue 16). Same data, same bytes; other data, another run name."""
    _validate(tiny_dataset, custom_params)
    first = _tree_bytes(tiny_dataset.data_docs_dir)
    _validate(tiny_dataset, custom_params)

    assert _tree_bytes(tiny_dataset.data_docs_dir) == first
    pages = b"".join(content for path, content in first.items() if path.suffix == ".html").decode()
    assert "not recorded" in pages and "Run Time" in pages  # GX's time fields say so rather than a fixed date
    names = {path.parts[2] for path in first if path.parts[0] == "validations"}
    assert len(names) == 2 and all(name.startswith("data-") for name in names)  # one per split, named by its data

    _write(tiny_dataset, make_images(60, seed=7))
    _validate(tiny_dataset, custom_params)
    renamed = {path.parts[2] for path in _tree_bytes(tiny_dataset.data_docs_dir) if path.parts[0] == "validations"}
    assert len(renamed & names) == 1  # the train split changed, the test split did not
