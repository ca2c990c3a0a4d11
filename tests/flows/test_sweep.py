"""The sweep flow's own checks: which trials it accepts before any work, and how a failed trial is reported."""

import subprocess

import pytest
import yaml

from flows.sweep import _checked_trials, _dvc_error
from tasks.common.errors import ConfigError
from tests.conftest import project_params_document


@pytest.fixture
def repo_root(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params_document()))
    return tmp_path


def test_grid_and_list_are_combined_in_order(repo_root):
    trials = _checked_trials(repo_root, "mnist-sample", {"units": [32, 64]}, [{"threshold": 0.95}])

    assert trials == [{"units": 32}, {"units": 64}, {"threshold": 0.95}]


def test_dataset_without_dvc_stages_is_refused_before_any_work(repo_root):
    with pytest.raises(ConfigError, match=r"sweep: dataset 'mnist' is not listed under `datasets` in params.yaml"):
        _checked_trials(repo_root, "mnist", {"units": [32]}, None)


def test_a_failing_trial_is_reported_with_dvcs_own_error_line():
    completed = subprocess.CompletedProcess([], 1, stdout="", stderr=(
        "ERROR: Experiment conflicts with existing experiment 'sweep-1'.\n\n"
        "Having any troubles? Hit us up at https://dvc.org/support, we are always happy to help!\n"))

    assert _dvc_error(completed) == "ERROR: Experiment conflicts with existing experiment 'sweep-1'."
    assert _dvc_error(subprocess.CompletedProcess([], 2, stdout="", stderr="")) == "exit code 2, no output"
