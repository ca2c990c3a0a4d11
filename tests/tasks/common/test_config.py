import pytest
import yaml

from tasks.common.config import load_params, override_params, parse_params
from tasks.common.errors import ConfigError
from tests.conftest import PROJECT_ROOT, project_params_document


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


def test_override_keeps_comments_and_validates(tmp_path):
    path = tmp_path / "params.yaml"
    original = (PROJECT_ROOT / "params.yaml").read_text()
    path.write_text(original)

    returned = override_params(path, {"train.epochs": 3, "data.mnist-sample.threshold": 0.5})

    assert returned == original
    rewritten = path.read_text()
    assert "# The datasets `dvc repro` builds." in rewritten
    document = yaml.safe_load(rewritten)
    assert document["train"]["epochs"] == 3 and document["data"]["mnist-sample"]["threshold"] == 0.5


@pytest.mark.parametrize("overrides, message", [
    ({"train.epochs": 0}, "train.epochs: Input should be greater than or equal to 1"),
    ({"trian.epochs": 3}, "override 'trian.epochs': no key 'trian' in params.yaml"),
])
def test_bad_override_changes_nothing(tmp_path, overrides, message):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT_ROOT / "params.yaml").read_text())
    before = path.read_bytes()

    with pytest.raises(ConfigError, match=message):
        override_params(path, overrides)
    assert path.read_bytes() == before
