"""The `sweep` flow on a real local Dask cluster (2 worker processes), a real DVC repo and a real Prefect server.

Two small trials on mnist-sample run at once, each as `dvc exp run --temp` in its own temporary copy of the
repository; afterwards `dvc exp show --json` must list both with their params and metrics, the ranking artifact
must order them by validation accuracy, and the workspace must be as the user left it.
"""

import json

import pytest
from tests.integration.repo import copy_repository, run
from versioning.experiments import experiment_json
from tests.prefect_server import temporary_server

# Slow (about 45 s): two Dask workers each start TensorFlow and DVC; `make test-slow` runs it, and CI.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
# The architecture is swept like any setting, each trial with its own architecture's settings.
TRIALS = [{"model": "dense", "dense.units": 16, "epochs": 2, "batch_size": 256},
          {"model": "cnn", "cnn.filters": [8, 16], "epochs": 2, "batch_size": 64}]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    from flows.sweep import sweep

    def only_mnist_sample(document):
        document["datasets"] = ["mnist-sample"]

    repo = copy_repository(tmp_path_factory.mktemp("sweep-repo"), only_mnist_sample)
    params_before = (repo / "params.yaml").read_bytes()
    with temporary_server():
        outcome = sweep(dataset="mnist-sample", trials=TRIALS, workers=2, name_prefix="trial", root=str(repo))
        artifact = latest_artifact("mnist-sample-sweep")
    return repo, outcome, artifact, params_before


def latest_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                            sort=ArtifactSort.CREATED_DESC, limit=1)
    return artifact


def shown_experiments(repo) -> dict[str, dict]:
    """`dvc exp show --json`, as {experiment name: its data (params, metrics)}."""
    baselines = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    return {experiment["name"]: experiment["revs"][0]["data"]
            for baseline in baselines for experiment in baseline.get("experiments") or []}


def dotted(section: dict, key: str):
    """`dense.units` in {"dense": {"units": 16}} -> 16."""
    for part in key.split("."):
        section = section[part]
    return section


def test_dvc_exp_show_lists_every_trial_with_its_params_and_metrics(swept):
    repo, outcome, _, _ = swept
    shown = shown_experiments(repo)

    assert {"trial-1", "trial-2"} <= set(shown)
    for name, trial in (("trial-1", TRIALS[0]), ("trial-2", TRIALS[1])):
        params = shown[name]["params"]["params.yaml"]["data"]["data"]["mnist-sample"]["train"]
        assert {key: dotted(params, key) for key in trial} == trial
        metrics = shown[name]["metrics"]["reports/mnist-sample/training_metrics.json"]["data"]
        (result,) = [result for result in outcome.ranked if result.name == name]
        assert metrics["val_accuracy"] == pytest.approx(result.val_accuracy)
        assert metrics["stop_epoch"] == 2
        # a trial stops after training: its metrics.json (test accuracy) is the baseline's, never evaluated
        assert experiment_json(repo, name, repo / "reports/mnist-sample/metrics.json") == json.loads(
            (repo / "reports/mnist-sample/metrics.json").read_text())


def test_artifact_ranks_the_trials_and_names_the_best(swept):
    _, outcome, artifact, _ = swept
    rows = json.loads(artifact.data)
    accuracies = [row["val_accuracy"] for row in rows]

    assert [row["rank"] for row in rows] == [1, 2] and accuracies == sorted(accuracies, reverse=True)
    assert [row["experiment"] for row in rows] == [result.name for result in outcome.ranked]
    assert outcome.best == outcome.ranked[0] and all(row["error"] == "" for row in rows)
    assert "best of 2 trials" in artifact.description and outcome.best.name in artifact.description


def test_trials_leave_the_workspace_alone(swept):
    repo, _, _, params_before = swept
    assert (repo / "params.yaml").read_bytes() == params_before
    assert not (repo / "models/mnist-sample/model.keras").exists()  # trained in temporary copies only
    fsck = run(["git", "fsck", "--no-progress"], repo, check=False)
    assert fsck.returncode == 0, fsck.stderr
