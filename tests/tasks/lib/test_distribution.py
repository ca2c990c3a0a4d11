"""train.distribution: TF_CONFIG checks, who writes the outputs, and real training under MirroredStrategy."""

import json

import pytest

from tasks.common.config import TrainParams, parse_params
from tasks.lib.distribution import discard_worker_outputs, is_chief, read_tf_config, writer_paths
from tasks.common.errors import ConfigError
from tasks.common.paths import DatasetPaths
from tasks.train import train_model
from tests.conftest import project_params_document

TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}, "task": {"type": "worker", "index": 1}}


def environ(document) -> dict[str, str]:
    return {"TF_CONFIG": document if isinstance(document, str) else json.dumps(document)}


def test_valid_tf_config_is_read():
    assert read_tf_config(environ(TWO_WORKERS)) == TWO_WORKERS


@pytest.mark.parametrize("raw, problem", [
    ("", "is not set (or empty)"),
    ("{cluster: []}", "is not valid JSON (Expecting property name enclosed in double quotes at character 1)"),
    ('{"task": {"type": "worker", "index": 0}}', "has no `cluster` mapping"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "lists no `worker` (or `chief`)"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     '`cluster.worker` must be a list of "host:port" strings'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "`task.type` must be one of the cluster's roles ['worker']"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "`task.index` must be an integer in 0..1"),
])
def test_bad_tf_config_names_the_variable_the_problem_and_what_was_found(raw, problem):
    with pytest.raises(ConfigError) as raised:
        read_tf_config(environ(raw))

    message = str(raised.value)
    assert message.startswith("train.distribution is 'multi_worker' but the TF_CONFIG environment variable")
    assert problem in message and f"(found {raw!r})" in message


def test_chief_is_worker_zero_unless_the_cluster_names_a_chief():
    assert not is_chief(TWO_WORKERS)
    assert is_chief({**TWO_WORKERS, "task": {"type": "worker", "index": 0}})
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    assert not is_chief(with_chief)
    assert is_chief({**with_chief, "task": {"type": "chief", "index": 0}})


def test_only_the_chief_writes_to_the_repository(tmp_path):
    paths = DatasetPaths(tmp_path, "mnist-sample")
    assert writer_paths(paths, "none", {}) == paths
    assert writer_paths(paths, "multi_worker", environ({**TWO_WORKERS, "task": {"type": "worker", "index": 0}})) == paths

    other = writer_paths(paths, "multi_worker", environ(TWO_WORKERS))
    other.model_file.parent.mkdir(parents=True)
    other.model_file.write_bytes(b"worker 1's copy")
    discard_worker_outputs(other, paths)

    assert other.root != paths.root and not other.root.exists()


def test_unknown_distribution_is_refused_with_the_allowed_values():
    document = project_params_document()
    document["train"]["distribution"] = "gpus"

    with pytest.raises(ConfigError, match=r"train.distribution: Input should be 'none', 'mirrored' or "
                                          r"'multi_worker' \(found 'gpus'\)"):
        parse_params(document)


def test_multi_worker_without_tf_config_fails_before_training(digits, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)

    with pytest.raises(ConfigError, match="TF_CONFIG environment variable is not set"):
        train_model(digits, TrainParams(epochs=1, distribution="multi_worker"))
    assert not digits.model_file.exists()


def test_mirrored_strategy_trains_and_writes_the_model(digits):
    result = train_model(digits, TrainParams(epochs=2, batch_size=32, threshold=1.0, distribution="mirrored"))

    assert result.summary.stop_epoch == 2 and result.summary.final_metrics["accuracy"] > 0.5
    assert digits.model_file.is_file()
    assert json.loads(digits.training_summary_file.read_text())["params"]["distribution"] == "mirrored"
