"""The same pipeline as a Prefect flow on real digits (mnist-sample), on a real temporary Prefect server.

Afterwards DVC must agree: `dvc status` clean and `dvc repro` with nothing to do.
"""

import json

import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from tests.integration.repo import copy_repository, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prefect_server():
    """A real Prefect server on loopback with a temporary database, stopped at the end of the module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def flow_run(prefect_server, tmp_path_factory):
    from flows.training import training_pipeline

    def only_mnist_sample(document):
        document["datasets"] = ["mnist-sample"]

    repo = copy_repository(tmp_path_factory.mktemp("flow-repo"), only_mnist_sample)
    state = training_pipeline(dataset="mnist-sample", root=str(repo),
                              overrides={"data.mnist-sample.threshold": 0.95}, return_state=True)
    return repo, state


def test_flow_completes_and_writes_the_outputs(flow_run):
    repo, state = flow_run
    assert state.is_completed(), state.message
    outcome = state.result()
    assert not outcome.skipped and outcome.promotion.promoted
    metrics = json.loads((repo / "reports/mnist-sample/metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(outcome.evaluation.test_accuracy)
    assert outcome.evaluation.test_accuracy > 0.85
    assert (repo / "models/mnist-sample/production/model.keras").is_file()
    assert (repo / "models/mnist-sample/model.keras").is_file()
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["mnist-sample"]["threshold"] == 0.95


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


def test_artifacts_have_stable_keys(flow_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["mnist-sample-metrics", "mnist-sample-per-class", "mnist-sample-decision"])))
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert set(by_key) == {"mnist-sample-metrics", "mnist-sample-per-class", "mnist-sample-decision"}
    assert "test accuracy" in by_key["mnist-sample-metrics"].data
    assert "| **9** |" in by_key["mnist-sample-metrics"].data
    table = json.loads(by_key["mnist-sample-per-class"].data)
    assert [row["class"] for row in table] == [str(digit) for digit in range(10)]


def test_unlisted_dataset_fails_before_any_work(prefect_server, flow_run):
    from flows.training import training_pipeline

    repo, _ = flow_run
    params_before = (repo / "params.yaml").read_bytes()
    state = training_pipeline(dataset="fashion-mnist", root=str(repo),
                              overrides={"train.epochs": 2}, return_state=True)

    assert state.is_failed()
    assert "'fashion-mnist' is not listed under `datasets`" in state.message
    assert (repo / "params.yaml").read_bytes() == params_before
    assert not (repo / "data/raw/fashion-mnist").exists()
