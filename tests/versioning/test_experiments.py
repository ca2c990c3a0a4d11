"""versioning/experiments.py: DVC's error line from a failed command, and a file as an experiment committed it
(a real git repository with an experiment ref, as `dvc exp run` leaves it)."""

import json
import subprocess

import pytest

from versioning.experiments import dvc_error, experiment_json


def git(*arguments, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *arguments], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo_with_an_experiment(tmp_path):
    git("init", "-q", cwd=tmp_path)
    metrics = tmp_path / "reports" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"test_accuracy": 0.5}))
    git("add", "-A", cwd=tmp_path)
    git("commit", "-qm", "workspace", cwd=tmp_path)
    metrics.write_text(json.dumps({"test_accuracy": 0.9}))
    git("commit", "-qam", "experiment", cwd=tmp_path)
    git("update-ref", "refs/exps/ab/cdef0123/sweep-1", "HEAD", cwd=tmp_path)
    git("reset", "-q", "--hard", "HEAD~1", cwd=tmp_path)  # the workspace is back as it was, as after --temp
    return tmp_path, metrics


def test_a_file_is_read_as_the_experiment_committed_it_not_as_the_workspace_holds_it(repo_with_an_experiment):
    root, metrics = repo_with_an_experiment

    assert experiment_json(root, "sweep-1", metrics) == {"test_accuracy": 0.9}
    assert json.loads(metrics.read_text()) == {"test_accuracy": 0.5}


def test_an_unknown_experiment_name_is_a_lookup_error_saying_how_many_matched(repo_with_an_experiment):
    root, metrics = repo_with_an_experiment

    with pytest.raises(LookupError, match=r"git has 0 experiment refs named 'sweep-2' \(expected 1\)"):
        experiment_json(root, "sweep-2", metrics)


def test_a_failing_trial_is_reported_with_dvcs_own_error_line():
    completed = subprocess.CompletedProcess([], 1, stdout="", stderr=(
        "ERROR: Experiment conflicts with existing experiment 'sweep-1'.\n\n"
        "Having any troubles? Hit us up at https://dvc.org/support, we are always happy to help!\n"))

    assert dvc_error(completed) == "ERROR: Experiment conflicts with existing experiment 'sweep-1'."
    assert dvc_error(subprocess.CompletedProcess([], 2, stdout="", stderr="")) == "exit code 2, no output"
