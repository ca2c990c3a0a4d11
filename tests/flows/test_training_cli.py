"""`python -m flows.training`: a user's mistake ends with one clear line and exit code 1, not a traceback.

These cases fail before any Prefect server starts, so they run in-process and fast.
"""

from __future__ import annotations

import re

import pytest
import yaml

from flows.training import main
from tests.conftest import project_params_document


def test_a_bad_value_in_params_yaml_is_one_line_naming_the_field(tmp_path, capsys):
    document = project_params_document()
    document["train"]["dense"]["units"] = "many"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(document))

    code = main(["--dataset", "mnist-sample", "--params-file", str(params_file)])

    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("training-pipeline failed for mnist-sample: ConfigError: ")
    assert "train.dense.units" in error and "many" in error
    assert "Traceback" not in error


@pytest.mark.parametrize(("dataset", "message"), [
    ("nope", "unknown dataset 'nope': params.yaml `data` defines ['custom', 'fashion-mnist', 'mnist', 'mnist-sample']"),
    # --help once offered every dataset defined under `data`; a dataset not listed under `datasets` then failed
    # inside a flow run, with Prefect's traceback (issue 16).
    ("mnist", "dataset 'mnist' is not listed under `datasets` in params.yaml (listed: ['fashion-mnist', "
              "'mnist-sample']); add it so DVC versions its outputs"),
])
def test_a_dataset_the_pipeline_cannot_run_is_one_line_before_any_flow_starts(dataset, message, capsys):
    code = main(["--dataset", dataset])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"training-pipeline failed for {dataset}: ConfigError: {message}\n"
    assert captured.out == ""


def test_help_offers_the_datasets_the_pipeline_runs_and_no_other(capsys):
    """--help once offered `mnist`, which then failed because it is not listed under `datasets` (issue 16)."""
    listed = project_params_document()["datasets"]

    with pytest.raises(SystemExit) as exit_code:
        main(["--help"])

    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert exit_code.value.code == 0
    offered = re.search(r"\(in params\.yaml: ([^;]*);", shown).group(1).split(", ")
    assert offered == listed and "mnist" not in offered  # `mnist` is defined under `data` but not listed


def test_a_served_prefect_that_died_is_one_line_saying_what_to_do(capsys):
    """A server killed without `make stop` left its address configured: `make flow` ended in three tracebacks
    ending `Failed to reach API` (issue 16). Now one line, before any flow starts."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.prefect_server import free_port

    dead = f"http://127.0.0.1:{free_port()}/api"  # a loopback port nothing listens on
    with temporary_settings({PREFECT_API_URL: dead}):
        code = main(["--dataset", "mnist-sample"])

    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.startswith(f"training-pipeline failed for mnist-sample: ServeError: the Prefect API at {dead} "
                                   "does not answer (ConnectError: ")
    assert captured.err.endswith("start it again with `make serve`, or `make stop` to run without it\n")
    assert len(captured.err.splitlines()) == 1
