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
    trials = _checked_trials(repo_root, "mnist-sample", {"dense.units": [32, 64]}, [{"threshold": 0.95}])

    assert trials == [{"dense.units": 32}, {"dense.units": 64}, {"threshold": 0.95}]


def test_dataset_without_dvc_stages_is_refused_before_any_work(repo_root):
    with pytest.raises(ConfigError, match=r"dataset 'mnist' is not listed under `datasets` in params.yaml \(listed: "):
        _checked_trials(repo_root, "mnist", {"dense.units": [32]}, None)
