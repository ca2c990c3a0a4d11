import pytest

from tasks.common.config import load_params, parse_params
from tasks.common.errors import ConfigError
from tests.conftest import project_params_document


def test_project_params_load_and_merge_overrides(project_params):
    assert project_params.datasets == ("fashion-mnist", "mnist-sample")
    sample = project_params.train_for("mnist-sample")
    assert sample.epochs == project_params.data["mnist-sample"].train.epochs != project_params.train.epochs
    assert sample.threshold == project_params.data["mnist-sample"].threshold
    assert sample.units == project_params.train.units


@pytest.mark.parametrize("section, key, value, expected", [
    ("data.fashion-mnist", "threshold", 1.5, "data.fashion-mnist.threshold: Input should be less than or equal to 1 (found 1.5)"),
    ("data.fashion-mnist", "threshold", 0, "data.fashion-mnist.threshold: Input should be greater than 0 (found 0)"),
    ("train", "epochs", 0, "train.epochs: Input should be greater than or equal to 1 (found 0)"),
    ("train", "epochs", "ten", "train.epochs: Input should be a valid integer, unable to parse string as an integer (found 'ten')"),
    ("train", "unit", 64, "train.unit: unknown key (found 64)"),
    ("train", "monitor", "precision",
     "train.monitor: Input should be 'accuracy', 'loss', 'val_accuracy' or 'val_loss' (found 'precision')"),
    ("data.fashion-mnist.train", "monitor", "f1", "data.fashion-mnist.train.monitor: Input should be 'accuracy'"),
    ("train", "threshold", 0.5, "train.threshold: not allowed here (found 0.5): the threshold is set per dataset, "
                                "as data.<dataset>.threshold (a value here would never be used)"),
    ("data.mnist-sample.train", "threshold", 0.5, "data.mnist-sample.train.threshold: not allowed here (found 0.5): "
                                                  "a dataset's threshold is data.<dataset>.threshold"),
    ("data.mnist-sample.train", "distribution", "mirrored", "data.mnist-sample.train.distribution: not allowed here"),
    ("data.mnist-sample.train", "units", 0, "data.mnist-sample.train.units: Input should be greater than or equal to 1"),
    ("data.mnist-sample.train", "validation_fraction", 0.7,
     "data.mnist-sample.train.validation_fraction: Input should be less than 0.5 (found 0.7)"),
])
def test_bad_value_names_key_rule_and_value(section, key, value, expected):
    document = project_params_document()
    node = document
    for part in section.split("."):
        node = node[part]
    node[key] = value

    with pytest.raises(ConfigError) as raised:
        parse_params(document)
    assert expected in str(raised.value)


def test_unknown_dataset_lists_the_allowed_names():
    document = project_params_document()
    document["datasets"] = ["fashion-mnist", "cifar10"]

    with pytest.raises(ConfigError, match=r"datasets.1: Input should be 'fashion-mnist', 'mnist', 'mnist-sample' or 'custom' \(found 'cifar10'\)"):
        parse_params(document)


def test_listed_dataset_without_settings_is_refused():
    document = project_params_document()
    del document["data"]["mnist-sample"]

    with pytest.raises(ConfigError, match=r"datasets \['mnist-sample'\] are listed but have no settings under `data`"):
        parse_params(document)


def test_plain_http_mirror_is_refused():
    document = project_params_document()
    document["data"]["mnist"]["mirrors"] = ["http://yann.lecun.com/exdb/mnist"]

    with pytest.raises(ConfigError, match=r"data.mnist.mirrors: .*'http://yann.lecun.com/exdb/mnist' is not https://"):
        parse_params(document)


def test_class_names_must_be_ten_distinct():
    document = project_params_document()
    document["data"]["custom"]["class_names"] = ["a", "b"]

    with pytest.raises(ConfigError, match=r"data.custom.class_names: .*expected 10 distinct class names, found 2"):
        parse_params(document)


def test_unknown_dataset_lookup(project_params):
    with pytest.raises(ConfigError, match=r"unknown dataset 'emnist': params.yaml `data` defines \['custom', 'fashion-mnist', 'mnist', 'mnist-sample'\]"):
        project_params.dataset("emnist")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("datasets: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(broken)


def test_every_training_setting_but_threshold_and_distribution_can_be_set_per_dataset_with_the_same_limits():
    """The per-dataset section is derived from the top-level one: a new training setting is one field, once."""
    from tasks.common.config import NOT_PER_DATASET, TrainOverrides, TrainParams, TrainSection

    assert set(TrainOverrides.model_fields) == set(TrainParams.model_fields) - set(NOT_PER_DATASET)
    assert set(TrainSection.model_fields) == set(TrainParams.model_fields) - {"threshold"}
    for name, field in TrainOverrides.model_fields.items():
        assert field.default is None
        assert TrainSection.model_fields[name].default == TrainParams.model_fields[name].default


def test_a_dataset_override_and_its_threshold_reach_the_training_params():
    document = project_params_document()
    document["data"]["mnist-sample"]["train"] = {"monitor": "val_loss", "units": 32}
    document["data"]["mnist-sample"]["threshold"] = 0.4

    merged = parse_params(document).train_for("mnist-sample")

    assert (merged.monitor, merged.units, merged.threshold) == ("val_loss", 32, 0.4)
    assert merged.epochs == document["train"]["epochs"]  # not overridden any more
