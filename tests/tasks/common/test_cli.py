"""tasks/common/cli.py (run_stage): the stage command line every `python -m tasks.<stage>` runs.

A good command runs the stage function once, with the dataset's paths and the validated params, under the
dataset's pipeline lock; a PipelineError (bad params.yaml, unknown dataset, the stage's own) ends in exit code 1
and a message naming the stage, dataset and error, without a traceback; a bug is not turned into a message.
The timing line a stage ends with is checked in tests/tasks/common/test_timings.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.common.cli import run_stage
from tasks.common.config import Params
from tasks.common.errors import DataValidationError
from tasks.common.lock import pipeline_lock
from tasks.common.paths import DatasetPaths
from tests.conftest import PROJECT_ROOT, project_params_document


class Probe:
    """A stage function that records how it was called (and optionally fails)."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.calls: list[tuple[DatasetPaths, Params]] = []
        self.lock_record: dict | None = None
        self.failure = failure

    def __call__(self, paths: DatasetPaths, params: Params) -> None:
        self.calls.append((paths, params))
        self.lock_record = json.loads(paths.lock_file.read_text())
        if self.failure is not None:
            raise self.failure


def write_params(folder: Path, **custom) -> Path:
    """The real params.yaml with `custom` as the only dataset, its settings updated with `custom`."""
    document = project_params_document()
    document["datasets"] = ["custom"]
    document["data"]["custom"].update(custom)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def everything_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_a_good_command_runs_the_stage_once_with_the_datasets_paths_and_params_under_the_lock(tmp_path):
    params_file, probe = write_params(tmp_path / "config", min_accuracy=0.42), Probe()

    code = run_stage("probe", ["custom", "--params", str(params_file), "--root", str(tmp_path)], probe)

    assert code == 0
    ((paths, params),) = probe.calls
    assert paths == DatasetPaths(tmp_path.resolve(), "custom")
    assert params.dataset("custom").min_accuracy == 0.42  # read from the --params file given
    assert (probe.lock_record["holder"], probe.lock_record["pid"]) == ("stage probe", os.getpid())
    assert paths.lock_file.read_bytes() == b""  # released on the way out
    with pipeline_lock(paths.lock_file, "next run"):
        pass


def test_the_default_root_and_params_are_the_current_directorys_at_call_time(tmp_path, monkeypatch):
    write_params(tmp_path, min_accuracy=0.33)
    probe = Probe()
    monkeypatch.chdir(tmp_path)

    assert run_stage("probe", ["custom"], probe) == 0

    ((paths, params),) = probe.calls
    assert paths.root == tmp_path.resolve()
    assert params.dataset("custom").min_accuracy == 0.33
    assert (tmp_path / ".dvc" / "tmp" / "pipeline-custom.lock").exists()


def test_a_relative_root_is_made_absolute(tmp_path, monkeypatch):
    params_file, probe = write_params(tmp_path), Probe()
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path)

    assert run_stage("probe", ["custom", "--root", "checkout", "--params", str(params_file)], probe) == 0

    ((paths, _),) = probe.calls
    assert paths.root == (tmp_path / "checkout").resolve() and paths.root.is_absolute()
    assert paths.lock_file.is_relative_to(tmp_path / "checkout")


def test_an_unknown_dataset_is_named_with_the_known_ones_and_nothing_is_written(tmp_path, capsys):
    params_file, probe = write_params(tmp_path), Probe()
    root = tmp_path / "repo"
    root.mkdir()

    code = run_stage("probe", ["cifar10", "--params", str(params_file), "--root", str(root)], probe)

    known = sorted(project_params_document()["data"])
    assert code == 1
    assert capsys.readouterr().err == (f"probe failed for cifar10: ConfigError: unknown dataset 'cifar10': "
                                       f"params.yaml `data` defines {known}\n")
    assert probe.calls == []
    assert everything_under(root) == []  # no lock file, no timing for a dataset that does not exist


def not_yaml(folder: Path) -> Path:
    path = folder / "params.yaml"
    path.write_text("datasets: [custom\n")
    return path


def bad_value(folder: Path) -> Path:
    path = write_params(folder)
    document = yaml.safe_load(path.read_text())
    document["train"]["epochs"] = 0
    path.write_text(yaml.safe_dump(document))
    return path


def not_a_mapping(folder: Path) -> Path:
    path = folder / "params.yaml"
    path.write_text("- custom\n")
    return path


def missing(folder: Path) -> Path:
    return folder / "params.yaml"


@pytest.mark.parametrize("make, problem", [
    (not_yaml, "not valid YAML: while parsing a flow sequence"),
    (bad_value, "1 invalid value(s):\n  - train.epochs: Input should be greater than or equal to 1 (found 0)"),
    (not_a_mapping, "expected a mapping at the top level, found list"),
    (missing, "params file not found"),
], ids=["not-yaml", "bad-value", "not-a-mapping", "missing"])
def test_bad_params_fail_with_exit_1_naming_the_file_before_anything_runs(tmp_path, capsys, make, problem):
    (tmp_path / "config").mkdir()
    params_file, probe = make(tmp_path / "config"), Probe()
    root = tmp_path / "repo"
    root.mkdir()

    code = run_stage("probe", ["custom", "--params", str(params_file), "--root", str(root)], probe)

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"probe failed for custom: ConfigError: {params_file}: {problem}")
    assert "Traceback" not in err
    assert probe.calls == []
    assert everything_under(root) == []


def test_a_stage_failure_exits_1_with_its_type_and_message_and_releases_the_lock(tmp_path, capsys):
    params_file = write_params(tmp_path)
    probe = Probe(DataValidationError("reports/custom/validation.json: expected 10 classes, found 9"))

    code = run_stage("probe", ["custom", "--params", str(params_file), "--root", str(tmp_path)], probe)

    err = capsys.readouterr().err
    assert code == 1
    assert ("probe failed for custom: DataValidationError: reports/custom/validation.json: expected 10 classes, "
            "found 9\n") in err
    assert "Traceback" not in err
    assert len(probe.calls) == 1
    paths = DatasetPaths(tmp_path, "custom")
    assert paths.lock_file.read_bytes() == b""
    assert json.loads(paths.stage_timing_file("probe").read_text())["outcome"] == "failed (DataValidationError)"


def test_a_bug_in_the_stage_is_raised_not_reported_and_the_lock_is_still_released(tmp_path, capsys):
    params_file = write_params(tmp_path)
    probe = Probe(ZeroDivisionError("division by zero"))

    with pytest.raises(ZeroDivisionError):
        run_stage("probe", ["custom", "--params", str(params_file), "--root", str(tmp_path)], probe)

    assert "probe failed for" not in capsys.readouterr().err
    paths = DatasetPaths(tmp_path, "custom")
    assert paths.lock_file.read_bytes() == b""
    with pipeline_lock(paths.lock_file, "next run"):
        pass
    assert json.loads(paths.stage_timing_file("probe").read_text())["outcome"] == "failed (ZeroDivisionError)"


def test_a_stage_refused_by_the_lock_does_not_run_or_touch_the_running_stages_timing(tmp_path, capsys):
    """Refused before timing starts: the run in progress keeps its own timing file."""
    params_file, probe = write_params(tmp_path), Probe()
    paths = DatasetPaths(tmp_path, "custom")
    paths.timings_dir.mkdir(parents=True)
    paths.stage_timing_file("probe").write_bytes(b'{"written by": "the run holding the lock"}')

    with pipeline_lock(paths.lock_file, "flow training-pipeline"):
        code = run_stage("probe", ["custom", "--params", str(params_file), "--root", str(tmp_path)], probe)

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"probe failed for custom: PipelineLockedError: {paths.lock_file}: another run holds "
                          "the lock (flow training-pipeline, pid ")
    assert probe.calls == []
    assert paths.stage_timing_file("probe").read_bytes() == b'{"written by": "the run holding the lock"}'


def test_a_missing_dataset_argument_is_a_usage_error_naming_the_stage_command(capsys):
    with pytest.raises(SystemExit) as raised:
        run_stage("probe", [], Probe())

    err = capsys.readouterr().err
    assert raised.value.code == 2
    assert err.startswith("usage: python -m tasks.probe [-h]")
    assert "the following arguments are required: dataset" in err


# ---- as a process: what DVC sees ----

def run_stage_command(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.normalize", *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})


def test_the_stage_process_with_bad_params_exits_1_with_the_message_and_no_traceback(tmp_path):
    params_file = bad_value(tmp_path)

    completed = run_stage_command("custom", "--params", str(params_file), "--root", str(tmp_path), cwd=tmp_path)

    assert completed.returncode == 1
    assert completed.stderr == (f"normalize failed for custom: ConfigError: {params_file}: 1 invalid value(s):\n"
                                "  - train.epochs: Input should be greater than or equal to 1 (found 0)\n")
    assert completed.stdout == ""
    assert not (tmp_path / "data").exists()


def test_the_stage_process_exits_0_and_writes_its_outputs(tiny_dataset):
    params_file = write_params(tiny_dataset.root)

    completed = run_stage_command("custom", "--params", str(params_file), cwd=tiny_dataset.root)

    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert sorted(path.name for path in tiny_dataset.processed_dir.iterdir()) == ["test.npz", "train.npz"]
    assert tiny_dataset.lock_file.read_bytes() == b""
