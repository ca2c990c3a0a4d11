import json
import re

import pytest
import yaml

from tasks.common.errors import DataValidationError
from tasks.normalize import main as normalize_main
from tasks.common.paths import DatasetPaths
from tasks.common.timings import read_timings, timed_stage
from tests.conftest import project_params_document


def test_a_finished_stage_is_announced_and_recorded(tmp_path):
    paths, lines = DatasetPaths(tmp_path, "custom"), []

    with timed_stage(paths, "train", "prefect", lines.append):
        pass

    (line,) = lines
    assert re.fullmatch(r"stage train@custom: ok in \d+\.\d s", line)
    recorded = json.loads(paths.stage_timing_file("train").read_text())
    assert recorded["outcome"] == "ok" and recorded["runner"] == "prefect" and recorded["seconds"] >= 0
    assert read_timings(paths, ["train"])["train"].finished_at == recorded["finished_at"]


def test_a_failed_stage_is_announced_recorded_and_still_raises(tmp_path):
    paths, lines = DatasetPaths(tmp_path, "custom"), []

    with pytest.raises(DataValidationError, match="bad labels"):
        with timed_stage(paths, "validate", "cli", lines.append):
            raise DataValidationError("bad labels")

    assert lines[0].startswith("stage validate@custom: failed (DataValidationError) in ")
    assert read_timings(paths, ["validate"])["validate"].outcome == "failed (DataValidationError)"


def test_missing_or_unreadable_timings_read_as_none(tmp_path):
    paths = DatasetPaths(tmp_path, "custom")
    paths.timings_dir.mkdir(parents=True)
    paths.stage_timing_file("train").write_text("{not json")

    assert read_timings(paths, ["download", "train"]) == {"download": None, "train": None}


@pytest.fixture
def params_file(tmp_path):
    document = project_params_document()
    document["datasets"] = ["custom"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_stage_command_ends_with_one_line_per_stage(tiny_dataset, params_file, capsys):
    exit_code = normalize_main(["custom", "--root", str(tiny_dataset.root), "--params", str(params_file)])

    assert exit_code == 0
    assert re.search(r"^stage normalize@custom: ok in \d+\.\d s$", capsys.readouterr().err, re.M)


def test_the_stage_command_reports_a_failure_in_its_line(tiny_dataset, params_file, capsys):
    tiny_dataset.raw_file("test", "labels").write_bytes(b"not an IDX file")

    exit_code = normalize_main(["custom", "--root", str(tiny_dataset.root), "--params", str(params_file)])

    err = capsys.readouterr().err
    assert exit_code == 1
    assert re.search(r"^stage normalize@custom: failed \(IDXFormatError\) in \d+\.\d s$", err, re.M)
    assert "normalize failed for custom: IDXFormatError" in err
