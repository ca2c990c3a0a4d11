"""The check_params stage: a valid params.yaml gives the same marker bytes every time; a bad one is one line."""

import yaml

from tasks.check_params import MARKER_TEXT, check_params, main
from tests.conftest import PROJECT_ROOT, project_params_document


def write_params(path, edit=None):
    document = project_params_document()
    if edit:
        edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_valid_file_writes_the_same_marker_whatever_its_values(tmp_path):
    marker = tmp_path / "data" / "params_check.txt"
    check_params(write_params(tmp_path / "params.yaml"), marker)
    first = marker.read_bytes()
    check_params(write_params(tmp_path / "params.yaml", lambda d: d["train"].update(epochs=3)), marker)

    assert marker.read_bytes() == first == MARKER_TEXT.encode()


def test_a_bad_value_is_one_line_naming_the_key_and_writes_nothing(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", lambda d: d["train"].update(unitz=128))

    code = main(["--params", str(params), "--root", str(tmp_path)])

    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("check_params failed: ConfigError: ") and "train.unitz: unknown key" in error
    assert "Traceback" not in error
    assert not (tmp_path / "data" / "params_check.txt").exists()


def test_the_committed_marker_is_the_one_the_stage_writes_for_the_project_params(tmp_path):
    check_params(PROJECT_ROOT / "params.yaml", tmp_path / "marker")

    assert (tmp_path / "marker").read_bytes() == (PROJECT_ROOT / "data" / "params_check.txt").read_bytes()
