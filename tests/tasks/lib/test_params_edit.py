"""tasks/lib/params_edit.py: overrides keep params.yaml's comments, and a bad one changes nothing."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tasks.common.errors import ConfigError
from tasks.lib.params_edit import override_params, put_back_params
from tests.conftest import PROJECT_ROOT


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


@pytest.mark.parametrize("overrides, effective", [
    ({"train.dense.units": 64}, False),  # mnist-sample trains the CNN (params.yaml's train.model)
    ({"data.mnist-sample.train.dense.units": 64}, False),
    ({"train.cnn.dense_units": 64}, True),
    ({"train.model": "dense", "train.dense.units": 64}, True),
    ({"data.fashion-mnist.train.dense.units": 64}, True),  # not this dataset's: another key's business
])
def test_an_override_of_an_architecture_the_dataset_does_not_train_is_refused(tmp_path, overrides, effective):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT_ROOT / "params.yaml").read_text())
    before = path.read_bytes()

    if effective:
        override_params(path, overrides, dataset="mnist-sample")
        assert path.read_bytes() != before
        return
    with pytest.raises(ConfigError) as refused:
        override_params(path, overrides, dataset="mnist-sample")
    key = next(iter(overrides))
    assert f"{key} is a setting of the 'dense' architecture, but mnist-sample trains 'cnn'" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == before


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


def kept_by(pid, tmp_path):
    """params.yaml overridden by a run of process `pid`, as a flow run leaves it while it lasts."""
    path, keep = tmp_path / "params.yaml", tmp_path / ".dvc" / "tmp" / "params-before-overrides.json"
    original = (PROJECT_ROOT / "params.yaml").read_text()
    path.write_text(original)
    override_params(path, {"train.epochs": 3}, keep)
    document = json.loads(keep.read_text())
    keep.write_text(json.dumps({**document, "pid": pid}))
    return path, keep, original


def test_the_overrides_of_a_killed_run_are_put_back_by_the_next(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path, keep, original = kept_by(gone.pid, tmp_path)

    assert put_back_params(path, keep)
    assert path.read_text() == original and not keep.exists()
    assert not put_back_params(path, keep)  # nothing left to put back


def test_the_overrides_of_a_run_still_going_are_left_to_it(tmp_path):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as running:
        try:
            path, keep, original = kept_by(running.pid, tmp_path)
            assert not put_back_params(path, keep)
            assert yaml.safe_load(path.read_text())["train"]["epochs"] == 3 and keep.exists()
            assert not put_back_params(path, keep, only_if_dead=False)  # nor by another run as it ends
            keep.write_text(json.dumps({**json.loads(keep.read_text()), "pid": os.getpid()}))
            assert put_back_params(path, keep, only_if_dead=False)  # what the run itself does when it ends
            assert path.read_text() == original
        finally:
            running.kill()


def test_a_second_run_with_overrides_is_refused_while_the_first_holds_them(tmp_path):
    """Two deployments share one checkout: the second run once took the first's overrides for the original text and
    put those back at its end, so the first's overrides stayed in params.yaml for good."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as first:
        try:
            path, keep, original = kept_by(first.pid, tmp_path)
            overridden = path.read_text()

            with pytest.raises(ConfigError, match=rf"another run \(process {first.pid}\) has its overrides in "
                                                  r"params.yaml until it ends"):
                override_params(path, {"train.epochs": 5}, keep)
            assert not put_back_params(path, keep, only_if_dead=False)  # the second run's end takes nothing back

            assert path.read_text() == overridden and json.loads(keep.read_text())["params"] == original
        finally:
            first.kill()
    assert put_back_params(path, keep) and path.read_text() == original  # once the first is gone


def test_overrides_go_back_to_the_file_they_were_made_in(tmp_path):
    other = tmp_path / "other" / "params.yaml"
    other.parent.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path, keep, original = kept_by(gone.pid, tmp_path)
    other.write_text("untouched\n")

    assert put_back_params(other, keep)  # as `make serve` calls it, with the project's params.yaml
    assert other.read_text() == "untouched\n" and path.read_text() == original
