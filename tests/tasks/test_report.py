"""The report page from a small real run (600/200 real digits, a real 3-epoch Keras model, real GX validation),
checked as text and, once, rendered in headless Chromium."""

import base64
import html
import io
import json
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from tasks.common.config import EvaluateParams, parse_params
from tasks.evaluate import evaluate_model
from tasks.common.paths import DatasetPaths
from tasks.promote import promote_model
from tasks.common.errors import OutputFileError
from tasks.report import most_confident_mistakes, write_report
from tasks.lib.report_figures import THUMBNAIL_SCALE, misclassified_grid_png, row_normalized
from tasks.lib.report_html import RunLog, render_run_log
from tasks.lib.run_history import RunRecord
from tasks.common.timings import timed_stage
from tasks.validate import validate_dataset
from tests.chromium import run_chromium
from tests.conftest import PROJECT_ROOT, project_params_document, run_log_html

DIGITS = tuple(str(digit) for digit in range(10))
SHOWN = 12


def digits_params():
    document = project_params_document()
    document["data"]["mnist-sample"]["expected_counts"] = {"train": 600, "test": 200}
    return parse_params(document)


@pytest.fixture(scope="module")
def reported(trained_digits, tmp_path_factory) -> DatasetPaths:
    """A copy of the trained run taken through validate, evaluate, promote (timed as the CLI does) and report."""
    root = tmp_path_factory.mktemp("reported")
    for folder in ("data", "models"):
        shutil.copytree(trained_digits.root / folder, root / folder)
    shutil.copytree(trained_digits.reports_dir, root / "reports" / "mnist-sample")
    paths, params = DatasetPaths(root, "mnist-sample"), digits_params()
    dataset = params.dataset("mnist-sample")
    validate_dataset(paths, dataset, params.validate_)
    with timed_stage(paths, "evaluate", "cli", lambda line: None):
        evaluate_model(paths, dataset)
    promote_model(paths, dataset, params.promote)
    write_report(paths, dataset, EvaluateParams(misclassified_shown=SHOWN))
    return paths


def image_sources(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', page)


def test_page_is_self_contained(reported):
    page = reported.report_file.read_text()
    sources = image_sources(page)

    assert len(sources) == 3 + SHOWN  # two confusion matrices, the curves, the gallery
    for source in sources:
        assert source.startswith("data:image/png;base64,")
    # One script, the run log beside the page (local state, tasks/lib/run_log.py); no style sheet.
    assert re.findall(r"<script[^>]*>", page, re.I) == ['<script src="run_log.js">'] and "<link" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_counts_heatmap_and_mistakes_grid_are_also_png_files(reported):
    page = reported.report_file.read_text()
    counts_heatmap = reported.confusion_matrix_png.read_bytes()

    assert "data:image/png;base64," + base64.b64encode(counts_heatmap).decode("ascii") in page
    assert reported.misclassified_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mistakes_grid_shows_the_mistakes_enlarged_in_rows_of_five(reported):
    grid = np.asarray(Image.open(reported.misclassified_png))
    predicted = np.load(reported.test_predictions_file)["predicted"]
    labels = np.load(reported.processed_file("test"))["labels"]
    shown = min(SHOWN, int(np.sum(predicted != labels)))
    tile = 28 * THUMBNAIL_SCALE
    rows = -(-shown // 5)

    assert grid.ndim == 2  # grayscale
    assert grid.shape[1] >= min(5, shown) * tile
    assert rows * tile < grid.shape[0] < rows * (tile + 3 * tile // 4) + tile // 2  # tiles plus two caption lines
    assert (grid < 128).mean() > 0.05  # dark ink on white, not a blank page


def test_mistakes_grid_cuts_long_class_names_and_needs_one_caption_per_image():
    images = np.zeros((2, 28, 28), dtype=np.float32)
    long_name = "a class name far longer than any caption should be"

    grid = Image.open(io.BytesIO(misclassified_grid_png(images, [long_name, "b"], ["c", long_name])))

    assert grid.width < 5 * 28 * THUMBNAIL_SCALE  # two cells, not widened by the long name
    with pytest.raises(ValueError, match="one caption per image expected: 2 images, 1 true and 2 predicted"):
        misclassified_grid_png(images, ["a"], ["b", "c"])


def test_headline_and_promotion_match_their_files(reported):
    page = reported.report_file.read_text()
    metrics = json.loads(reported.metrics_file.read_text())
    promotion = json.loads(reported.promotion_file.read_text())

    training = json.loads(reported.training_summary_file.read_text())

    shown = dict(re.findall(r'data-metric="(\w+)">([^<]+)<', page))
    assert shown["model"] == training["params"]["model"]
    assert shown["device"] == training["device"] == "CPU"  # no GPU on this machine (tests/tasks/lib/test_device.py)
    assert f'trained on <span data-run-card="device">{training["device"]}</span>' in page  # the run card too
    assert float(shown["test_accuracy"]) == pytest.approx(metrics["test_accuracy"], abs=5e-5)
    assert float(shown["test_loss"]) == pytest.approx(metrics["test_loss"], abs=5e-5)
    assert int(shown["stop_epoch"]) == metrics["stop_epoch"] == 3
    assert int(shown["test_images"]) == metrics["test_images"] == 200
    assert f'data-promoted="{str(promotion["promoted"]).lower()}"' in page
    assert html.escape(promotion["reason"]) in page
    for name, scores in json.loads(reported.class_scores_file.read_text())["per_class"].items():
        row = re.escape(f">{name}</td><td class=\"number\">{scores['precision']:.4f}</td><td class=\"number\">"
                        f"{scores['recall']:.4f}</td>")
        assert re.search(row, page), name


def test_gallery_shows_real_mistakes_most_confident_first(reported):
    page = reported.report_file.read_text()
    predicted = np.load(reported.test_predictions_file)["predicted"]
    labels = np.load(reported.processed_file("test"))["labels"]

    captions = re.findall(r"<figcaption>(\d) &rarr; (\d)<br>([\d.]+)% \(#(\d+)\)</figcaption>", page)
    assert len(captions) == min(SHOWN, int(np.sum(predicted != labels)))
    for true_class, predicted_class, _, row in captions:
        assert labels[int(row)] == int(true_class) != predicted[int(row)] == int(predicted_class)
    confidences = [float(confidence) for _, _, confidence, _ in captions]
    assert confidences == sorted(confidences, reverse=True)
    thumbnail = re.search(r'<img alt="test image \d+" src="data:image/png;base64,([^"]+)"', page).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(thumbnail))).size == (84, 84)


def test_the_page_is_drawn_from_evaluates_probabilities_without_loading_the_model(reported, tmp_path):
    shutil.copytree(reported.root, tmp_path / "copy")
    paths = DatasetPaths(tmp_path / "copy", "mnist-sample")
    paths.model_file.write_bytes(b"not a model")  # proves the page needs no model: Keras would refuse this file

    write_report(paths, digits_params().dataset("mnist-sample"), EvaluateParams(misclassified_shown=SHOWN))

    gallery = re.compile(r"<figcaption>.*?</figcaption>")
    assert gallery.findall(paths.report_file.read_text()) == gallery.findall(reported.report_file.read_text())
    saved = np.load(paths.test_predictions_file)
    from tasks.lib.predictions import save_predictions

    refused = re.escape(f"{paths.test_predictions_file}: no probabilities for this test set and its 10 classes; run "
                        "the evaluate stage first")
    save_predictions(paths.test_predictions_file, saved["predicted"], "0" * 64, saved["probabilities"])
    with pytest.raises(OutputFileError, match=refused):  # made on another test set
        write_report(paths, digits_params().dataset("mnist-sample"), EvaluateParams())
    save_predictions(paths.test_predictions_file, saved["predicted"], str(saved["test_set_sha256"]))
    with pytest.raises(OutputFileError, match=refused):  # saved before evaluate kept probabilities
        write_report(paths, digits_params().dataset("mnist-sample"), EvaluateParams())


def test_validation_summary_and_run_card(reported):
    page = reported.report_file.read_text()
    validation = json.loads(reported.validation_file.read_text())

    for split, results in validation["splits"].items():
        for result in results:
            assert html.escape(result["description"]) in page
    assert page.count('<span class="pass">pass</span>') >= sum(map(len, validation["splits"].values()))
    link = re.search(r'<a href="([^"]+)">Great Expectations Data Docs</a>', page).group(1)
    assert link == "data_docs/index.html" and (reported.reports_dir / link).is_file()
    from tasks.common.fileio import sha256_of_file

    assert sha256_of_file(reported.raw_file("test", "labels")) in page
    assert "<td>seed</td><td class=\"number\">42</td>" in page
    assert "<td>tensorflow</td>" in page


def test_the_run_log_beside_the_page_holds_the_wall_times_and_the_page_loads_it(reported):
    page, log = reported.report_file.read_text(), run_log_html(reported)

    assert '<div id="run-log">' in page and '<script src="run_log.js"></script>' in page
    assert re.search(r"<td>evaluate</td><td>ok</td><td class=\"number\">[\d.]+ s</td>", log)
    assert "<td>train</td><td>not recorded</td>" in log
    assert "not a git checkout" in log and "No run has committed a version of this dataset yet" in log


def test_the_page_is_the_same_bytes_for_the_same_inputs(reported, tmp_path):
    """The page is a DVC output: its time, commit and wall times made every rerun change dvc.lock, so a fresh
    clone's `make run` left `git status` dirty (issue 16). They are in the run log now, which does change."""
    shutil.copytree(reported.root, tmp_path / "copy")
    paths = DatasetPaths(tmp_path / "copy", "mnist-sample")
    before, log_before = paths.report_file.read_bytes(), run_log_html(paths)
    with timed_stage(paths, "evaluate", "cli", lambda line: None):
        time.sleep(0.2)

    write_report(paths, digits_params().dataset("mnist-sample"), EvaluateParams(misclassified_shown=SHOWN))

    assert paths.report_file.read_bytes() == before
    assert run_log_html(paths) != log_before


def test_the_run_log_shows_each_committed_run_and_the_accuracy_over_time():
    history = [RunRecord("b" * 10, "2026-12-02T10:00:00+00:00", "scheduled run a", "base + 1 drop(s), latest d1",
                         "rejected: accuracy dropped by 0.02", 0.89, "b" * 32, {"train.epochs": 3}),
               RunRecord("a" * 10, "2026-12-01T10:00:00+00:00", "make run", "base", "promoted: every gate passed",
                         0.91, "a" * 32, {})]
    log = RunLog("shoes", "2026-12-02T11:00:00+00:00", "c" * 40, {"train": None}, history)
    statement = render_run_log(log)
    shown = json.loads(statement[statement.index("=") + 1:].strip().rstrip(";"))

    rows = re.findall(r"<tr><td>(2026-12-0\d)T", shown)
    assert rows == ["2026-12-02", "2026-12-01"]  # newest first
    assert "rejected: accuracy dropped by 0.02" in shown and "train.epochs=3" in shown
    circles = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="4" fill="(#[0-9a-f]+)">', shown)
    (x_old, y_old, colour_old), (x_new, y_new, colour_new) = circles  # oldest on the left
    assert float(x_old) < float(x_new) and float(y_old) < float(y_new)  # 0.91 drawn above 0.89
    assert colour_old == "#17692c" and colour_new == "#888"  # promoted in green
    assert "</" not in statement  # a script cannot be ended early by the HTML it carries


def test_missing_input_is_named(reported, tmp_path):
    shutil.copytree(reported.root, tmp_path / "copy")
    paths = DatasetPaths(tmp_path / "copy", "mnist-sample")
    paths.metrics_file.unlink()

    with pytest.raises(OutputFileError, match=re.escape(f"missing {paths.metrics_file} (written by the evaluate "
                                                         "stage). Run the earlier stages first")):
        write_report(paths, digits_params().dataset("mnist-sample"), EvaluateParams())
    assert not paths.report_file.exists() or paths.report_file.read_bytes() == reported.report_file.read_bytes()


def test_most_confident_mistakes_come_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 0, 1])

    mistakes = most_confident_mistakes(probabilities, labels, ("a", "b"), count=3)

    assert [(m.index, m.true_class, m.predicted_class) for m in mistakes] == [(3, "a", "b"), (1, "a", "b"),
                                                                              (4, "b", "a")]
    assert mistakes[0].confidence == pytest.approx(0.95)


def test_row_normalized_keeps_empty_rows_at_zero():
    shares = row_normalized(np.array([[3, 1], [0, 0]]))

    assert shares.tolist() == [[0.75, 0.25], [0.0, 0.0]]


# Run inside a copy of the page once it has loaded: what Chromium decoded for each image, and the headline as shown.
PROBE = """<script>window.addEventListener("load", () => {
  const found = {runLog: document.getElementById("run-log").innerText,
                 images: Array.from(document.images, (image) => ({
                   alt: image.alt, complete: image.complete, width: image.naturalWidth, height: image.naturalHeight})),
                 metrics: Object.fromEntries(Array.from(document.querySelectorAll("[data-metric]"),
                                                        (element) => [element.dataset.metric, element.innerText]))};
  const output = document.createElement("pre");
  output.id = "probe";
  output.textContent = JSON.stringify(found);
  document.body.appendChild(output);
});</script>"""


@pytest.mark.integration
def test_page_renders_in_headless_chromium(reported, tmp_path):
    probed = reported.reports_dir / "probed.html"  # beside run_log.js, as the page is
    probed.write_text(reported.report_file.read_text().replace("</body>", PROBE + "</body>"))
    metrics = json.loads(reported.metrics_file.read_text())

    dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], tmp_path / "profile")
    found = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))

    probed.unlink()
    assert "Wall time per stage" in found["runLog"] and "No run log here" not in found["runLog"]
    assert len(found["images"]) == 3 + SHOWN
    for image in found["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    assert float(found["metrics"]["test_accuracy"]) == pytest.approx(metrics["test_accuracy"], abs=5e-5)
    assert float(found["metrics"]["test_loss"]) == pytest.approx(metrics["test_loss"], abs=5e-5)
    assert int(found["metrics"]["stop_epoch"]) == metrics["stop_epoch"]
    assert int(found["metrics"]["test_images"]) == metrics["test_images"]

    screenshot = PROJECT_ROOT / "test-artifacts" / "report-mnist-sample.png"
    screenshot.parent.mkdir(exist_ok=True)
    screenshot.unlink(missing_ok=True)
    run_chromium(["--window-size=1280,6000", f"--screenshot={screenshot}", reported.report_file.as_uri()],
                 tmp_path / "profile")
    with Image.open(screenshot) as picture:
        assert picture.size == (1280, 6000)
        assert len(picture.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 16  # not a blank page


def test_the_page_lists_each_drop_and_the_labels_the_champion_disputes_by_file_name(reported, tmp_path):
    """Issue 30 item 4: the suspects go on the report page, with file names (ingest writes them in ingest.json)."""
    shutil.copytree(reported.root, tmp_path / "copy")
    paths = DatasetPaths(tmp_path / "copy", "mnist-sample")
    issue = {"path": "train/3/scan-0042.png", "split": "train", "label": "3", "champion_says": "8",
             "label_probability": 0.02, "top_probability": 0.97}
    drop = {"drop": "20270115T080000Z-1a2b3c4d", "ingested_at": "2027-01-15T08:00:00+00:00",
            "added": {"train": {"3": 40}, "test": {}}, "duplicates": 2, "leakage": 1, "quarantined": 0,
            "label_issues": [issue]}
    paths.ingest_summary_file.write_text(json.dumps({"dataset": "mnist-sample", "drops": [drop],
                                                     "images_added": {"train": 40, "test": 0}}))

    write_report(paths, digits_params().dataset("mnist-sample"), EvaluateParams(misclassified_shown=SHOWN))

    page = paths.report_file.read_text().replace(' class="number"', "")  # numbers are right-aligned
    assert "<h3>Labels the champion disputes (1)</h3>" in page
    assert ("<tr><td>20270115T080000Z-1a2b3c4d</td><td>train/3/scan-0042.png</td><td>3</td><td>8</td><td>0.97</td>"
            "<td>0.02</td></tr>") in page
    assert "<td>20270115T080000Z-1a2b3c4d</td><td>2027-01-15T08:00:00+00:00</td><td>train 40, test 0</td><td>2</td>" \
        "<td>1</td><td>0</td><td>1</td>" in page
    before = reported.report_file.read_text()
    assert 'id="new-data"' in before and "No drop ingested" in before
