"""tasks/lib/params_edit.py: overrides keep params.yaml's comments, and a bad one changes nothing."""

import pytest
import yaml

from tasks.common.errors import ConfigError
from tasks.lib.params_edit import override_params
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
