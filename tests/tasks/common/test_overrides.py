"""A flow run's overrides (tasks.common.config): applied in memory, checked before anything is written, and kept
in the dataset's overrides file for its stages and DVC, never in params.yaml."""

import pytest
import yaml

from tasks.common.config import load_params, load_run_params, read_overrides, write_overrides
from tasks.common.errors import ConfigError
from tasks.common.paths import DatasetPaths
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT_ROOT / "params.yaml").read_text())
    return path


def test_overrides_apply_to_the_run_and_leave_the_file_as_it_was(params_file):
    before = params_file.read_bytes()

    params = load_params(params_file, {"train.epochs": 3, "data.mnist-sample.threshold": 0.5})

    assert params.train.epochs == 3 and params.dataset("mnist-sample").threshold == 0.5
    assert params_file.read_bytes() == before
    assert load_params(params_file).train.epochs != 3


@pytest.mark.parametrize("overrides, effective", [
    ({"train.dense.units": 64}, False),  # mnist-sample trains the CNN (params.yaml's train.model)
    ({"data.mnist-sample.train.dense.units": 64}, False),
    ({"train.cnn.dense_units": 64}, True),
    ({"train.model": "dense", "train.dense.units": 64}, True),
    ({"data.fashion-mnist.train.dense.units": 64}, True),  # not this dataset's: another key's business
])
def test_an_override_of_an_architecture_the_dataset_does_not_train_is_refused(params_file, overrides, effective):
    if effective:
        load_params(params_file, overrides, "mnist-sample")
        return
    with pytest.raises(ConfigError) as refused:
        load_params(params_file, overrides, "mnist-sample")
    key = next(iter(overrides))
    assert f"{key} is a setting of the 'dense' architecture, but mnist-sample trains 'cnn'" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("overrides, message", [
    ({"train.epochs": 0}, "train.epochs: Input should be greater than or equal to 1"),
    ({"trian.epochs": 3}, "override 'trian.epochs': no key 'trian' in params.yaml"),
])
def test_a_bad_override_is_refused_naming_the_key(params_file, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_params(params_file, overrides, "mnist-sample")


def test_a_stage_reads_params_yaml_through_its_own_datasets_overrides_file_only(tmp_path, params_file):
    paths, other = DatasetPaths(tmp_path, "mnist-sample"), DatasetPaths(tmp_path, "fashion-mnist")
    write_overrides(paths, {"train.epochs": 3})

    assert load_run_params(params_file, paths).train.epochs == 3
    assert load_run_params(params_file, other).train.epochs == load_params(params_file).train.epochs
    assert yaml.safe_load(paths.overrides_file.read_text()) == {"train.epochs": 3}

    write_overrides(paths, None, only_if_missing=True)  # what a stage and check_params do: a file in place stays
    assert read_overrides(paths.overrides_file) == {"train.epochs": 3}
    write_overrides(paths, None)  # what the run does as it ends
    assert paths.overrides_file.read_text() == "{}\n" and read_overrides(paths.overrides_file) == {}
    assert read_overrides(other.overrides_file) == {}  # none yet


def test_an_overrides_file_that_is_not_a_mapping_is_refused_in_one_line(tmp_path, params_file):
    paths = DatasetPaths(tmp_path, "mnist-sample")
    paths.overrides_file.parent.mkdir(parents=True)
    paths.overrides_file.write_text("- train.epochs\n")

    with pytest.raises(ConfigError, match=r"mnist-sample.yaml: expected a mapping of dotted params.yaml keys"):
        load_run_params(params_file, paths)
