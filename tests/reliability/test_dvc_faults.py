"""Orchestration faults under `dvc repro`, in a real git + DVC repository copied from this one.

A stage that fails leaves dvc.lock byte-identical and the last good outputs restorable with one command; two
runs at once never corrupt dvc.lock; a run killed while holding the pipeline lock does not block the next.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys

import pytest
import yaml

from versioning.dvc_state import outputs_held
from tasks.common.errors import PipelineLockedError
from tasks.lib import idx
from tasks.lib.mnist_sample import build_mnist_sample
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tests.integration.repo import VENV_BIN, build_custom_only, copy_repository, run
from tests.reliability.conftest import snapshot

pytestmark = pytest.mark.integration
# The restore command docs/RELIABILITY.md gives after a failed `dvc repro`.
RESTORE = "git checkout -- reports dvc.lock && dvc checkout"
HOLD_THE_LOCK = """
import sys, time
from tasks.common.lock import pipeline_lock
with pipeline_lock(sys.argv[1], "flow training-pipeline"):
    print("held", flush=True)
    time.sleep(120)
"""

# What a flow run holds while it runs (flows/training.py), held by a process of its own.
HOLD_WHAT_A_FLOW_HOLDS = """
import sys, time
from pathlib import Path
from versioning.dvc_state import pipeline_held
from tasks.common.paths import DatasetPaths
with pipeline_held(DatasetPaths(Path.cwd(), "custom"), "flow training-pipeline"):
    print("held", flush=True)
    time.sleep(120)
"""


def outputs(repo):
    """Every output of the pipeline (data, models, reports) and dvc.lock, by content. Stage wall times and the run
    log beside the report page (reports/<dataset>/timings/ and run_log.js, git-ignored local state) record the
    failed attempt too, by design."""
    return {**snapshot(repo / "data"), **snapshot(repo / "models", ignore=("custom/.train_backup",)),
            **snapshot(repo / "reports", ignore=("custom/timings", "custom/run_log.js")),
            "dvc.lock": snapshot(repo)["dvc.lock"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository after one good `dvc repro` on 300 / 100 real digits, committed as docs/DATA.md says."""
    incoming = tmp_path_factory.mktemp("incoming")
    arrays = build_mnist_sample()
    for (split, kind), name in IDX_FILE_NAMES.items():
        subset = arrays[(split, kind)][: 300 if split == "train" else 100]
        (incoming / f"{name}.gz").write_bytes(gzip.compress(idx.encode_idx(subset)))

    repo = copy_repository(tmp_path_factory.mktemp("repo"),
                           build_custom_only(incoming, 300, 100, epochs=2, min_accuracy=0.0))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "last good run"], repo)
    return repo


def lock_text(repo) -> str:
    return (repo / "dvc.lock").read_text()


def set_param(repo, section, key, value):
    document = yaml.safe_load((repo / "params.yaml").read_text())
    document[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def test_failed_stage_keeps_dvc_lock_and_one_command_restores_the_outputs(repo):
    before = outputs(repo)
    before_lock_text = lock_text(repo)
    # A failure only the train stage can find: multi-worker training on a machine with no cluster described.
    set_param(repo, "train", "distribution", "multi_worker")

    failed = run(["dvc", "repro"], repo, check=False)  # TF_CONFIG is not set here

    assert failed.returncode != 0
    assert "train failed for custom: ConfigError: " in failed.stderr and "TF_CONFIG" in failed.stderr
    # The dataset's stages are recorded as the last good run left them. Only check_params' entry moved: it ran
    # first, checked the new params.yaml and recorded its hash (its marker, which every stage depends on, is
    # byte-identical, so no stage counts as changed because of it).
    lock_before, lock_after = (yaml.safe_load(text)["stages"] for text in (before_lock_text, lock_text(repo)))
    assert {name: entry for name, entry in lock_after.items() if name != "check_params"} == \
        {name: entry for name, entry in lock_before.items() if name != "check_params"}
    assert lock_after["check_params"]["outs"] == lock_before["check_params"]["outs"]
    print("missing after the failed stage:", sorted(set(before) - set(outputs(repo))))
    run(["git", "checkout", "--", "params.yaml"], repo)
    run(["bash", "-c", RESTORE], repo)
    assert outputs(repo) == before
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def test_two_repro_runs_at_once_one_waits_or_fails_and_dvc_lock_stays_whole(repo):
    set_param(repo, "train", "dense", {"units": 64})
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    started = [subprocess.Popen(["dvc", "repro"], cwd=repo, env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    finished = [(process.wait(timeout=600), *process.communicate()) for process in started]

    codes = sorted(code for code, _, _ in finished)
    print("two dvc repro at once:", [(code, stderr.strip().splitlines()[-1:]) for code, _, stderr in finished])
    assert codes[0] == 0, finished
    if codes[1] != 0:  # the other one was refused, with a message naming the lock
        (refused,) = [stderr for code, _, stderr in finished if code != 0]
        assert any(reason in refused for reason in (
            "Unable to acquire lock. Most likely another DVC process is running",  # DVC's repository lock
            "is busy, it is being blocked by",  # DVC's per-output lock
            "another run holds the lock",  # the pipeline lock (tasks/common/lock.py) a stage command holds
        )), refused
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["train@custom"]["params"]["params.yaml"]["train"]["dense"]["units"] == 64
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def test_stage_refused_while_a_run_holds_the_lock_then_runs_once_the_holder_is_killed(repo):
    paths = DatasetPaths(repo, "custom")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(paths.lock_file)], cwd=repo,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = outputs(repo)

        refused = run([sys.executable, "-m", "tasks.normalize", "custom"], repo, check=False)

        assert refused.returncode == 1
        assert (f"normalize failed for custom: PipelineLockedError: {paths.lock_file}: another run holds the lock "
                f"(flow training-pipeline, pid {holder.pid}") in refused.stderr
        assert outputs(repo) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)

    after_kill = run([sys.executable, "-m", "tasks.normalize", "custom"], repo)

    assert f"the run that held this lock was killed (flow training-pipeline, pid {holder.pid}" in after_kill.stderr
    assert outputs(repo) == before


def test_a_dvc_command_during_a_flow_run_is_refused_before_it_touches_the_outputs(repo):
    """Issue 27 item 4: `dvc repro --force --single-item train@...` during a deployment run was refused by the stage
    command (the pipeline lock), after DVC had removed model.keras, model.onnx, training.json and the history."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WHAT_A_FLOW_HOLDS], cwd=repo, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
    try:
        assert holder.stdout.readline().strip() == "held"
        before = outputs(repo)

        refused = [run(command, repo, check=False) for command in (
            ["dvc", "repro", "--force", "--single-item", "train@custom"], ["dvc", "commit", "--force", "train@custom"])]

        assert outputs(repo) == before
        assert [completed.returncode != 0 for completed in refused] == [True, True], refused
        for completed in refused:
            assert "is busy, it is being blocked by" in completed.stderr, completed.stderr
            assert f"(PID {holder.pid})" in completed.stderr, completed.stderr
        # A second flow run (a terminal one does not wait) is refused in one line that names the holder.
        with pytest.raises(PipelineLockedError) as second:
            with outputs_held(repo, "custom"):
                pass
        assert "\n" not in str(second.value)
        assert str(second.value).startswith("custom: a DVC command is writing the outputs ('"), second.value
        assert f"(PID {holder.pid}): -c" in str(second.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)

    # Its holder killed, DVC drops the entry (it checks the pid) and the command runs.
    assert run(["dvc", "commit", "--force", "train@custom"], repo).returncode == 0
    assert outputs(repo) == before


def readme_experiment_command() -> list[str]:
    """The experiment command of the README's "Running it" table, as a user copies it."""
    from tests.conftest import PROJECT_ROOT

    (row,) = [line for line in (PROJECT_ROOT / "README.md").read_text().splitlines()
              if line.startswith("| an experiment |")]
    return row.split("`")[1].split()


def test_the_readmes_experiment_leaves_the_served_model_and_params_alone(repo):
    """`dvc exp run -S ...` in the workspace once promoted the experiment's model and left params.yaml changed, so
    predict and the next scheduled run used it (issue 16). The README's command runs in a temporary copy."""
    command = readme_experiment_command()
    assert command[:3] == ["dvc", "exp", "run"], command
    before = outputs(repo)
    params_before = (repo / "params.yaml").read_bytes()
    git_status = ["git", "status", "--porcelain", "--untracked-files=no"]
    status_before = run(git_status, repo).stdout  # earlier tests of this module leave their own changes

    ran = run(command, repo)

    assert outputs(repo) == before  # the production model, every output and dvc.lock
    assert (repo / "params.yaml").read_bytes() == params_before
    assert run(git_status, repo).stdout == status_before
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], repo).stdout
    assert len(shown.strip().splitlines()) >= 3, ran.stdout + shown  # header, the workspace/HEAD and the experiment


@pytest.mark.slow
def test_a_run_that_cannot_write_dvcs_cache_fails_in_one_line_and_leaves_the_workspace_as_it_was(repo, tmp_path):
    """Issue 27 item 8: with an immutable cache, every stage passed, then the run failed at `dvc commit` with a raw
    DVC traceback naming neither the step nor the folder, and left training.json and index.html modified."""
    cache = repo / ".dvc" / "cache"
    if subprocess.run(["chattr", "-R", "+i", str(cache)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is refused on this file system (the test needs an immutable folder)")
    try:
        # What a served checkout is: every run's version committed (the tests above left changes of their own).
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "the last recorded run", "--allow-empty"], repo)
        before, status_before = outputs(repo), run(["git", "status", "--porcelain"], repo).stdout
        environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        environment.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        # Another number of epochs: a new model, so there is something new to write to the cache.
        failed = run([sys.executable, "-m", "flows.training", "--dataset", "custom", "--overrides",
                      '{"train.epochs": 3}'], repo, check=False, env=environment)

        errors = failed.stderr.strip().splitlines()
        assert failed.returncode == 1, failed.stderr
        assert errors[-1].startswith("training-pipeline failed for custom: OutputsNotRecordedError: dvc commit of "), \
            failed.stderr
        assert str(cache) in errors[-1] and "Operation not permitted" in errors[-1], errors[-1]
        assert "chattr -R -i" in errors[-1] and "Traceback" not in failed.stderr
        assert outputs(repo) == before
        assert run(["git", "status", "--porcelain"], repo).stdout == status_before
    finally:
        subprocess.run(["chattr", "-R", "-i", str(cache)], check=True)
