"""The sweep flow's own checks: which trials it accepts before any work, and how a failed trial is reported."""

import pytest
import yaml

from flows.sweep import _checked_trials
from tasks.common.errors import ConfigError
from tests.conftest import project_params_document


@pytest.fixture
def repo_root(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params_document()))
    return tmp_path


def test_grid_and_list_are_combined_in_order(repo_root):
    trials = _checked_trials(repo_root, "mnist-sample", {"cnn.dense_units": [32, 64]}, [{"threshold": 0.95}])

    assert trials == [{"cnn.dense_units": 32}, {"cnn.dense_units": 64}, {"threshold": 0.95}]


def test_a_grid_that_varies_an_architecture_the_dataset_does_not_train_is_refused_before_any_trial(repo_root):
    """mnist-sample trains the CNN (params.yaml): a grid over the dense model's width trained one model N times."""
    with pytest.raises(ConfigError) as refused:
        _checked_trials(repo_root, "mnist-sample", {"dense.units": [64, 256]}, None)

    assert str(refused.value) == (
        "sweep trial 1 {'dense.units': 64}: data.mnist-sample.train.dense.units is a setting of the 'dense' "
        "architecture, but mnist-sample trains 'cnn', which never reads it; vary a cnn setting (train.cnn.*), or set "
        "train.model: dense in the same change")
    assert _checked_trials(repo_root, "mnist-sample", {"model": ["dense"], "dense.units": [64]}, None) == [
        {"model": "dense", "dense.units": 64}]


def test_dataset_without_dvc_stages_is_refused_before_any_work(repo_root):
    with pytest.raises(ConfigError, match=r"dataset 'mnist' is not listed under `datasets` in params.yaml \(listed: "):
        _checked_trials(repo_root, "mnist", {"dense.units": [32]}, None)


def test_a_sweep_is_refused_while_the_dataset_holds_a_flow_runs_overrides(repo_root):
    """`dvc exp run --temp` takes the workspace's changes into every trial: a run's overrides would train them all."""
    from tasks.common.config import write_overrides
    from tasks.common.paths import DatasetPaths

    write_overrides(DatasetPaths(repo_root, "mnist-sample"), {"train.epochs": 1})

    with pytest.raises(ConfigError, match=r"mnist-sample.yaml holds a flow run's overrides \{'train.epochs': 1\}"):
        _checked_trials(repo_root, "mnist-sample", {"cnn.dense_units": [32]}, None)
    write_overrides(DatasetPaths(repo_root, "mnist-sample"), None)
    assert _checked_trials(repo_root, "mnist-sample", {"cnn.dense_units": [32]}, None) == [{"cnn.dense_units": 32}]
