"""The same pipeline as a Prefect flow on real digits (mnist-sample), on a real temporary Prefect server.

Afterwards DVC must agree: `dvc status` clean and `dvc repro` with nothing to do.
"""

import json
import logging
import re

import pytest
import yaml
from tasks.common.paths import DatasetPaths
from tests.conftest import run_log_html
from tests.integration.repo import copy_repository, run
from tests.prefect_server import temporary_server

pytestmark = pytest.mark.integration


class RecordsOf(logging.Handler):
    """The records these loggers hand to their handlers (after the loggers' filters), while in a `with` block."""

    def __init__(self, *names: str):
        super().__init__()
        self.names, self.seen = names, []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record)

    def __enter__(self):
        for name in self.names:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in self.names:
            logging.getLogger(name).removeHandler(self)


@pytest.fixture(scope="module")
def prefect_server():
    """A real Prefect server on loopback with a temporary database, stopped at the end of the module;
    its log is checked for errors then."""
    with temporary_server():
        yield


@pytest.fixture(scope="module")
def flow_run(prefect_server, tmp_path_factory):
    from flows.training import training_pipeline

    def only_mnist_sample(document):
        document["datasets"] = ["mnist-sample"]
        # In params.yaml, not as a flow override: overrides last their run only, so dvc.lock would then differ from
        # params.yaml (test_deployments.py checks that case).
        document["data"]["mnist-sample"]["threshold"] = 0.95  # stops training early

    repo = copy_repository(tmp_path_factory.mktemp("flow-repo"), only_mnist_sample)
    state = training_pipeline(dataset="mnist-sample", root=str(repo), return_state=True)
    return repo, state


def test_flow_completes_and_writes_the_outputs(flow_run):
    repo, state = flow_run
    assert state.is_completed(), state.message
    outcome = state.result()
    assert not outcome.skipped and outcome.promotion.promoted
    metrics = json.loads((repo / "reports/mnist-sample/metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(outcome.evaluation.metrics.test_accuracy)
    assert outcome.evaluation.metrics.test_accuracy > 0.85
    assert (repo / "models/mnist-sample/production/model.keras").is_file()
    assert (repo / "models/mnist-sample/model.keras").is_file()
    assert run(["git", "diff", "--stat", "params.yaml"], repo).stdout == ""
    assert (repo / "data/overrides/mnist-sample.yaml").read_text() == "{}\n"  # no overrides, and DVC records that


def test_the_flow_runs_every_stage_once_in_the_pipelines_order(flow_run):
    """The flow's body is wiring written by hand; the one stage list (tasks/common/paths.py) is what it must run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tasks.common.paths import STAGES

    _, state = flow_run
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
            any_=[state.state_details.flow_run_id])))
    started = sorted((run for run in task_runs if run.state.is_completed()), key=lambda run: run.start_time)
    assert tuple(run.name.rsplit("-", 1)[0] for run in started) == STAGES  # task run names: <task>-<3 hex>


def test_dvc_accepts_the_flow_outputs_as_up_to_date(flow_run):
    repo, _ = flow_run
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
    again = run(["dvc", "repro"], repo)
    assert "Running stage" not in again.stdout


def test_second_run_with_nothing_changed_skips_training(flow_run):
    from flows.training import training_pipeline

    repo, first = flow_run
    model_before = (repo / "models/mnist-sample/model.keras").read_bytes()
    last_run = json.loads((repo / "reports/mnist-sample/last_run.json").read_text())
    assert last_run["flow_run_id"] == str(first.state_details.flow_run_id)

    outcome = training_pipeline(dataset="mnist-sample", root=str(repo))

    assert outcome.skipped
    assert f"nothing changed since run {last_run['flow_run_name']}" in outcome.message
    assert "training skipped" in outcome.message
    assert (repo / "models/mnist-sample/model.keras").read_bytes() == model_before


def test_an_edit_to_another_datasets_params_does_not_retrain_this_one(flow_run):
    """params.yaml is one file: the check_params stage sees every edit, but mnist-sample's stages depend only on
    their own params. A run of mnist-sample after an edit to fashion-mnist's section skips training."""
    from flows.training import training_pipeline

    repo, _ = flow_run
    original = (repo / "params.yaml").read_text()
    document = yaml.safe_load(original)
    document["data"]["fashion-mnist"]["min_accuracy"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        outcome = training_pipeline(dataset="mnist-sample", root=str(repo))
    finally:
        (repo / "params.yaml").write_text(original)

    assert outcome.skipped, outcome.message


def latest_artifacts(keys: list[str]) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    by_key = {}
    for artifact in sorted(artifacts, key=lambda artifact: artifact.created):
        by_key[artifact.key] = artifact
    return by_key


def test_artifacts_have_stable_keys(flow_run):
    keys = ["mnist-sample-metrics", "mnist-sample-per-class", "mnist-sample-decision", "mnist-sample-report",
            "mnist-sample-confusion", "mnist-sample-training-progress"]
    by_key = latest_artifacts(keys)
    assert set(by_key) == set(keys)
    assert "test accuracy" in by_key["mnist-sample-metrics"].data
    assert "| **9** |" in by_key["mnist-sample-metrics"].data
    table = json.loads(by_key["mnist-sample-per-class"].data)
    assert [row["class"] for row in table] == [str(digit) for digit in range(10)]


def test_artifacts_link_the_report_and_show_the_confusion_matrix(flow_run):
    import base64

    repo, _ = flow_run
    report = repo / "reports/mnist-sample/index.html"
    metrics = json.loads((repo / "reports/mnist-sample/metrics.json").read_text())
    by_key = latest_artifacts(["mnist-sample-report", "mnist-sample-confusion", "mnist-sample-training-progress"])

    page = report.read_text()
    assert f"data-metric=\"test_accuracy\">{metrics['test_accuracy']:.4f}<" in page
    run_log = run_log_html(DatasetPaths(repo, "mnist-sample"))  # the page's Runs section
    for stage in ("download", "validate", "normalize", "train", "evaluate", "promote"):  # timed by the tasks
        assert re.search(rf"<td>{stage}</td><td>ok</td><td class=\"number\">[\d.]+ s</td><td>[^<]+</td><td>prefect</td>",
                         run_log), stage
    assert f"]({report.as_uri()})" in by_key["mnist-sample-report"].data
    image = by_key["mnist-sample-confusion"].data
    assert image.startswith("data:image/png;base64,")
    assert base64.b64decode(image.split(",", 1)[1]) == (repo / "reports/mnist-sample/confusion_matrix.png").read_bytes()
    progress = by_key["mnist-sample-training-progress"]
    assert progress.data == 100
    assert progress.description.startswith(f"Done: stopped after epoch {metrics['stop_epoch']} of at most 30")


def test_progress_artifact_moves_on_every_epoch(prefect_server):
    """A real Keras fit (tiny model, random data) in a flow with the train task's progress callback; the
    artifact is read back from the server after each epoch."""
    import keras
    import numpy as np
    from prefect import flow

    from orchestration.artifacts import training_progress
    from tasks.common.config import TrainParams
    from tasks.train import build_model

    key = "progress-check-training-progress"

    @flow
    def fit_with_progress() -> list:
        progress, seen = training_progress("progress-check", epochs=4), []
        reader = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: seen.append(latest_artifacts([key])[key]))
        images = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
        build_model(TrainParams(dense={"units": 8}, learning_rate=0.01)).fit(images, np.arange(64) % 10, epochs=4, verbose=0,
                                                     callbacks=[progress.callback(), reader])
        return seen

    seen = fit_with_progress()

    assert [artifact.data for artifact in seen] == [25, 50, 75, 100]
    assert [artifact.description.split(":")[0] for artifact in seen] == [f"epoch {n} of at most 4" for n in range(1, 5)]
    assert "accuracy" in seen[0].description and "loss" in seen[0].description


def test_a_drop_of_images_the_dataset_holds_adds_nothing_retrains_nothing_and_commits_nothing(flow_run):
    """Issue 30 item 5: a drop whose files were all refused (duplicates, leakage) made an empty drop, a new data
    version, and the run retrained on the same training images."""
    import os
    import time

    from flows.training import training_pipeline
    from tasks.lib.drops import read_split
    from tests.conftest import write_image_folder

    repo, _ = flow_run
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["versioning"]["commit"] = "always"  # a run that changed anything would commit it
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "commit every run"], repo)
    paths = DatasetPaths(repo, "mnist-sample")
    train, test = read_split(paths, "train"), read_split(paths, "test")
    inbox = repo / "data/inbox/mnist-sample"
    written = write_image_folder(inbox, {"train": (train[0][:3], train[1][:3])}, [str(digit) for digit in range(10)])
    written += write_image_folder(inbox, {"train": (test[0][:1], test[1][:1])}, [str(digit) for digit in range(10)],
                                  prefix="from-test-")
    for path in written:  # settled long ago (ingest.settle_seconds)
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    head, lock = run(["git", "rev-parse", "HEAD"], repo).stdout, (repo / "dvc.lock").read_bytes()
    model = (repo / "models/mnist-sample/production/model.keras").read_bytes()

    outcome = training_pipeline(dataset="mnist-sample", root=str(repo))

    assert outcome.skipped, outcome.message
    assert outcome.message.startswith("mnist-sample: nothing added: all 4 new file(s) refused (3 duplicate(s), "
                                      "1 leakage, 0 quarantined), each with its reason in "), outcome.message
    assert "training skipped" in outcome.message
    assert run(["git", "rev-parse", "HEAD"], repo).stdout == head
    assert (repo / "dvc.lock").read_bytes() == lock
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert "@mnist-sample" not in run(["dvc", "status"], repo).stdout  # (check_params sees the versioning edit)
    assert (repo / "models/mnist-sample/production/model.keras").read_bytes() == model
    assert sorted(path.name for path in inbox.rglob("*") if path.is_file()) == [".gitkeep"]
    (reasons,) = (repo / "data/quarantine/mnist-sample").glob("*/REASONS.txt")
    assert len(reasons.read_text().splitlines()) == 4


def test_a_drifted_drop_under_block_is_versioned_not_trained_and_the_run_fails_saying_why(flow_run):
    """Last in this module: it leaves the copy blocked. 1,500 real Fashion-MNIST images filed as digits drift the
    pixel statistics (the labels stay balanced); the champion of the first run is the reference."""
    from flows.training import training_pipeline
    from tests.conftest import real_fashion_images, write_image_folder

    repo, _ = flow_run
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["drift"]["action"] = "block"
    params["ingest"]["settle_seconds"] = 0
    params["versioning"]["commit"] = "always"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "block on drift"], repo)
    model_before = (repo / "models/mnist-sample/model.keras").read_bytes()
    write_image_folder(repo / "data/inbox/mnist-sample", {"train": real_fashion_images(1500, "train")},
                       [str(digit) for digit in range(10)])

    records = RecordsOf("prefect.task_runs", "prefect.flow_runs")
    with records:
        state = training_pipeline(dataset="mnist-sample", root=str(repo), return_state=True)

    assert state.is_failed()
    # Issue 16: the failure is Prefect's line and the message, without Prefect's traceback before it.
    failures = [record for record in records.seen if record.levelno >= logging.ERROR]
    assert any("DriftBlockedError" in record.getMessage() for record in failures)
    assert not any(record.exc_info or record.exc_text for record in failures)
    assert "stage 'drift' failed: DriftBlockedError: drift from the data the champion learned from (base): " \
           "train mean intensity: PSI " in state.message
    assert (repo / "models/mnist-sample/model.keras").read_bytes() == model_before
    status = run(["dvc", "status"], repo).stdout
    assert "ingest@mnist-sample" not in status and "drift@mnist-sample" in status  # versioned, not trained on
    assert json.loads((repo / "reports/mnist-sample/drift.json").read_text())["blocked"] is True
    message = run(["git", "log", "-1", "--format=%B"], repo).stdout
    assert message.startswith("mnist-sample: flow run ") and "data base + 1 drop(s), latest " in message
    assert "not trained: drift from the data the champion learned from" in message
    assert "dvc.lock" in run(["git", "show", "--name-only", "--format=", "HEAD"], repo).stdout
    artifact = latest_artifacts(["mnist-sample-drift"])["mnist-sample-drift"]
    assert artifact.data.startswith("# mnist-sample: drift, training BLOCKED")
    assert "| train | mean intensity | PSI |" in artifact.data

    commit = run(["git", "rev-parse", "HEAD"], repo).stdout
    again = training_pipeline(dataset="mnist-sample", root=str(repo), return_state=True)
    assert again.is_failed() and "DriftBlockedError" in again.message
    assert run(["git", "rev-parse", "HEAD"], repo).stdout == commit  # blocked again, nothing new: no commit
