"""`python -m flows.training`: a user's mistake ends with one clear line and exit code 1, not a traceback.

These cases fail before any Prefect server starts, so they run in-process and fast.
"""

from __future__ import annotations

import pytest
import yaml

from flows.training import main
from tests.conftest import project_params_document


def test_a_bad_value_in_params_yaml_is_one_line_naming_the_field(tmp_path, capsys):
    document = project_params_document()
    document["train"]["units"] = "many"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(document))

    code = main(["--dataset", "mnist-sample", "--params-file", str(params_file)])

    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("training-pipeline failed for mnist-sample: ConfigError: ")
    assert "train.units" in error and "many" in error
    assert "Traceback" not in error


def test_an_unknown_dataset_is_refused_listing_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "nope"])

    assert exit_info.value.code == 2
    assert "invalid choice: 'nope' (choose from 'fashion-mnist', 'mnist', 'mnist-sample', 'custom')" in (
        capsys.readouterr().err)
