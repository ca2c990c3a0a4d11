"""The whole pipeline through `dvc repro`, on real digits brought in as a `custom` dataset (real DVC repo and remote)."""

import csv
import gzip
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from tasks.lib import idx
from tasks.lib.mnist_sample import build_mnist_sample
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tests.conftest import run_log_html
from tests.chromium import run_chromium
from tests.integration.repo import build_custom_only, copy_repository, run

pytestmark = pytest.mark.integration


def write_user_files(folder):
    """What a user brings: the four standard IDX files, gzipped, here 1,000 / 200 real MNIST digits."""
    folder.mkdir()
    arrays = build_mnist_sample()
    for (split, kind), name in IDX_FILE_NAMES.items():
        subset = arrays[(split, kind)][: 1000 if split == "train" else 200]
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx.encode_idx(subset)))


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    incoming = tmp_path_factory.mktemp("incoming") / "digits"
    write_user_files(incoming)

    # The threshold is on validation accuracy (100 held-out images): 0.9 stops the CNN after a few epochs; the
    # model's quality is not what this module tests.
    repo = copy_repository(tmp_path_factory.mktemp("repo"),
                           build_custom_only(incoming, 1000, 200, epochs=15, threshold=0.9))
    first = run(["dvc", "repro"], repo)
    return repo, first


def test_repro_runs_every_stage_and_writes_the_outputs(reproduced):
    repo, first = reproduced
    for stage in ("download", "validate", "normalize", "train", "evaluate", "promote", "report"):
        assert f"Running stage '{stage}@custom'" in first.stdout
        assert re.search(rf"^stage {stage}@custom: ok in \d+\.\d s$", first.stderr, re.M), stage
    metrics = json.loads((repo / "reports/custom/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8 and 1 <= metrics["stop_epoch"] <= 15
    assert (repo / "models/custom/model.keras").is_file()
    assert (repo / "reports/custom/data_docs/index.html").is_file()
    page = (repo / "reports/custom/index.html").read_text()
    assert f'data-metric="test_accuracy">{metrics["test_accuracy"]:.4f}<' in page
    assert "<td>train</td><td>ok</td>" in run_log_html(DatasetPaths(repo, "custom"))  # wall times, by the stage commands
    assert "custom@" not in (repo / "dvc.lock").read_text()
    # One line per stage stays readable: no library chatter at INFO (GX logs ~200 lines while importing).
    assert "great_expectations._docs_decorators" not in first.stdout + first.stderr
    assert "evaluate@custom" in (repo / "dvc.lock").read_text()


def test_second_repro_does_nothing_and_says_so(reproduced):
    repo, _ = reproduced
    second = run(["dvc", "repro"], repo)

    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def test_an_edit_of_a_models_layers_reruns_train_onward_and_no_stage_before_it(reproduced):
    """Issue 28 item 4: the layers were built in tasks/common, which every stage depends on, so editing a model
    reran download, ingest, validate... for every dataset."""
    repo, _ = reproduced
    builders = next(path for path in (repo / "tasks").rglob("*.py") if "keras.layers.Conv2D(" in path.read_text())
    original = builders.read_text()
    builders.write_text(original + "\n# an edit of the CNN's layers\n")
    try:
        changed = json.loads(run(["dvc", "status", "--json"], repo).stdout)
    finally:
        builders.write_text(original)
    assert set(changed) == {"train@custom"}, changed  # evaluate, promote, report follow once train writes a model
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def test_retraining_to_the_same_weights_gives_the_same_model_file_so_later_stages_are_skipped(reproduced):
    repo, _ = reproduced
    lock_before = (repo / "dvc.lock").read_bytes()
    model_before = (repo / "models/custom/model.keras").read_bytes()

    retrained = run(["dvc", "repro", "--single-item", "--force", "train@custom"], repo)
    after = run(["dvc", "repro"], repo)

    assert "Running stage 'train@custom'" in retrained.stdout
    assert (repo / "models/custom/model.keras").read_bytes() == model_before  # training is seeded
    assert "Running stage" not in after.stdout, after.stdout  # evaluate, promote and report see the same model
    assert (repo / "dvc.lock").read_bytes() == lock_before


@pytest.mark.parametrize(("key", "value", "named"), [
    ("unitz", 128, "train.unitz: unknown key"),
    ("epochs", -1, "train.epochs"),
])
def test_a_bad_params_yaml_stops_repro_before_any_output_is_removed(reproduced, key, value, named):
    """DVC removes a stage's outputs before running it: the check_params stage, upstream of every stage, must
    refuse the file first (issue 16: `train.unitz: 128` used to cost the model and its training record)."""
    repo, _ = reproduced
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    kept = ["models/custom/model.keras", "models/custom/model.onnx", "reports/custom/training.json",
            "reports/custom/training_history.csv", "reports/custom/metrics.json", "dvc.lock"]
    before = {name: (repo / name).read_bytes() for name in kept}
    document = yaml.safe_load(original)
    document["train"][key] = value
    params_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        failed = run(["dvc", "repro"], repo, check=False)
    finally:
        params_file.write_text(original)

    assert failed.returncode != 0
    assert named in failed.stderr and "nothing was removed" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert "Running stage 'train@custom'" not in failed.stdout
    assert {name: (repo / name).read_bytes() for name in kept} == before
    # Fixed again: the check reruns, writes the same marker, and nothing downstream runs.
    again = run(["dvc", "repro"], repo)
    assert re.findall(r"Running stage '([^']+)'", again.stdout) == ["check_params"], again.stdout
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def test_push_then_pull_in_a_fresh_clone_restores_data_and_model(reproduced, tmp_path):
    repo, _ = reproduced
    run(["dvc", "push"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "results"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    # The default remote is a folder inside each checkout; point the clone at the original's, as a team
    # would point every clone at one shared S3/GCS/Azure remote.
    run(["dvc", "remote", "modify", "--local", "local", "url", str(repo / "dvc-storage")], clone)

    run(["dvc", "pull"], clone)

    for relative in ("models/custom/model.keras", "data/raw/custom/train-images-idx3-ubyte",
                     "data/processed/custom/test.npz", "reports/custom/index.html"):
        assert (clone / relative).read_bytes() == (repo / relative).read_bytes(), relative
    assert run(["dvc", "status"], clone).stdout.strip() == "Data and pipelines are up to date."
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], clone)
    assert_plots_page(tmp_path / "plots" / "index.html", revisions=["workspace"])


def assert_plots_page(page_file: Path, revisions: list[str]) -> None:
    """DVC's plots page holds the training curves and the confusion matrix, with data from each revision."""
    page = page_file.read_text()
    specs = {plot_id: json.loads(spec)
             for spec, plot_id in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#([^']+)'", page, re.S)}
    assert {"loss", "accuracy", "reports_custom_training_history_csv", "reports_custom_predictions_csv"} <= set(specs)
    curves = specs["reports_custom_training_history_csv"]["data"]["values"]
    confusion = specs["reports_custom_predictions_csv"]["data"]["values"]
    assert {"epoch", "val_accuracy"} <= set(curves[0]) and {"actual", "predicted"} <= set(confusion[0])
    assert {row["rev"] for row in curves} == {row["rev"] for row in confusion} == set(revisions)
    assert sum(row["rev"] == revisions[0] for row in confusion) == 200  # one row per test image
    # Issue 16: DVC's own page loads Vega from a CDN and was blank offline; .dvc/config names a template with
    # Vega inlined (tasks/lib/offline_pages.py). Chromium here resolves no host name.
    assert not re.search(r'<script[^>]*src="https?://', page)
    dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", page_file.as_uri()],
                       page_file.parent / "chromium-profile")
    drawn = re.findall(r'<div id="([^"]+)"[^>]*class="vega-embed[^"]*"', dom)
    assert set(specs) <= set(drawn), (sorted(specs), drawn)


@pytest.fixture(scope="module")
def experiment(reproduced):
    repo, _ = reproduced
    # The default model is the CNN: one key gives the lecture's dense model back, a second sets its width.
    run(["dvc", "exp", "run", "-S", "train.model=dense", "-S", "train.dense.units=32", "-n", "units-32"], repo)
    return repo


def test_experiment_with_a_changed_param_is_listed(experiment):
    import keras

    repo = experiment
    table = list(csv.DictReader(io.StringIO(run(["dvc", "exp", "show", "--csv"], repo).stdout)))
    (experiment,) = [row for row in table if row["Experiment"] == "units-32"]
    assert (experiment["train.model"], experiment["train.dense.units"]) == ("dense", "32")
    assert 0 < float(experiment["test_accuracy"]) <= 1
    params = json.loads((repo / "reports/custom/training.json").read_text())["params"]
    assert (params["model"], params["dense"]["units"]) == ("dense", 32)
    model = keras.saving.load_model(repo / "models/custom/model.keras")
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense", "Dense"]  # the lecture's model
    assert model.layers[1].units == 32


@pytest.mark.parametrize("command", [["dvc", "metrics", "show"], ["dvc", "metrics", "diff", "HEAD", "units-32"],
                                     ["dvc", "exp", "show", "--only-changed", "--drop", r".*/|params\.yaml"]],
                         ids=["show", "diff", "exp-show"])
def test_dvc_tables_fit_a_200_column_terminal_without_being_cut(experiment, command):
    """Issue 16: `dvc metrics show` had lines of 3,501 characters and `dvc exp show` 365 columns. The terminal is
    made very wide so that DVC cuts nothing: the table's own width is what is measured. `dvc exp show` is the
    README's command."""
    shown = run(command, experiment, env={"COLUMNS": "20000"}).stdout

    widest = max(len(line) for line in shown.splitlines())
    assert widest <= 200, f"{command}: {widest} columns:\n{shown[:3000]}"
    assert "test_accuracy" in shown and "…" not in shown


def test_the_metrics_files_hold_numbers_only(experiment):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], experiment).stdout)

    for revision in shown.values():
        for file_name, content in revision["data"].items():
            assert all(isinstance(value, (int, float)) for value in content["data"].values()), file_name


def test_plots_diff_between_baseline_and_experiment(experiment, tmp_path):
    run(["dvc", "plots", "diff", "HEAD", "units-32", "-o", str(tmp_path / "diff")], experiment)

    assert_plots_page(tmp_path / "diff" / "index.html", revisions=["HEAD", "units-32"])


def test_bad_user_data_stops_repro_before_training(reproduced):
    """Runs last: it leaves the copy with bad raw data."""
    repo, _ = reproduced
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    model_before = (repo / "models/custom/model.keras").read_bytes()
    processed_before = (repo / "data/processed/custom/train.npz").read_bytes()
    incoming = Path(lock["download@custom"]["params"]["params.yaml"]["data.custom.local_dir"])
    labels = idx.read_labels(incoming / "t10k-labels-idx1-ubyte.gz").copy()
    labels[3] = 10
    (incoming / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx.encode_idx(labels)))

    # Issue 16: `dvc repro` saw no change in local_dir ("up to date"); it watches it through data/sources/custom.
    status = run(["dvc", "status", "download@custom"], repo).stdout
    assert "modified:           data/sources/custom" in status, status
    failed = run(["dvc", "repro"], repo, check=False)

    assert failed.returncode != 0
    assert "label is an integer in 0..9" in failed.stderr and "t10k-labels-idx1-ubyte" in failed.stderr
    assert "rows [3]" in failed.stderr
    assert "Running stage 'download@custom'" in failed.stdout
    assert "Running stage 'normalize@custom'" not in failed.stdout
    after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in ("validate", "normalize", "train", "evaluate"):
        assert after[f"{stage}@custom"] == lock[f"{stage}@custom"], stage
    assert (repo / "models/custom/model.keras").read_bytes() == model_before
    assert (repo / "data/processed/custom/train.npz").read_bytes() == processed_before
