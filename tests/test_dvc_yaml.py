"""Guard against drift: dvc.yaml, tasks/common/paths.py, params.yaml and the Prefect flow describe the same pipeline."""

import importlib
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.common.paths import PARAMS_CHECK_FILE, PARAMS_CHECK_STAGE, STAGES
from tasks.common.paths import DatasetPaths
from tests.code_deps import is_code
from tests.conftest import PROJECT_ROOT, project_params_document

DVC_FILE = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
DVC_YAML = DVC_FILE["stages"]


def stage_paths(stage: str, section: str, dataset: str) -> set[str]:
    entries = DVC_YAML[stage]["do"].get(section, [])
    names = [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]
    return {name.replace("${item}", dataset) for name in names}


def declared_outputs(paths: DatasetPaths) -> dict[str, set]:
    """Every output tasks/common/paths.py defines, by the stage that writes it."""
    return {stage: {str(path.relative_to(paths.root)) for path in paths.outputs(stage)} for stage in STAGES}


def test_stage_names_and_order_match_the_package():
    assert tuple(DVC_YAML) == (PARAMS_CHECK_STAGE, *STAGES)


def test_the_params_check_comes_first_and_every_stage_depends_on_its_marker():
    """DVC removes a stage's outputs before running it: the check must be upstream of every stage."""
    check = DVC_YAML[PARAMS_CHECK_STAGE]
    assert check["cmd"] == "python -m tasks.check_params"
    assert "params.yaml" in check["deps"] and "tasks/check_params.py" in check["deps"]
    assert [next(iter(out)) for out in check["outs"]] == [PARAMS_CHECK_FILE]
    for stage in STAGES:
        assert PARAMS_CHECK_FILE in DVC_YAML[stage]["do"]["deps"], stage


@pytest.mark.parametrize("stage", STAGES)
def test_stage_command_runs_the_module_of_the_same_name(stage):
    assert DVC_YAML[stage]["foreach"] == "${datasets}"
    assert DVC_YAML[stage]["do"]["cmd"] == f"python -m tasks.{stage} ${{item}}"
    assert callable(importlib.import_module(f"tasks.{stage}").main)


@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist-sample", "custom"])
def test_outputs_match_tasks_paths(dataset):
    paths = DatasetPaths(PROJECT_ROOT, dataset)
    for stage, expected in declared_outputs(paths).items():
        declared = set().union(*(stage_paths(stage, section, dataset) for section in ("outs", "metrics", "plots")))
        assert declared == expected, stage


@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist-sample"])
def test_data_dependencies_are_outputs_of_earlier_stages_or_the_inbox(dataset):
    paths = DatasetPaths(PROJECT_ROOT, dataset)
    # The data sources no stage writes, people and tools do: the inbox, and the drift acceptances.
    written_by_people = {str(paths.inbox_dir.relative_to(PROJECT_ROOT)): "ingest",
                         str(paths.drift_acceptance_dir.relative_to(PROJECT_ROOT)): "drift",
                         str(paths.source_link.relative_to(PROJECT_ROOT)): "download",  # a link to local_dir
                         "vendor/web": "validate"}  # the Data Docs' scripts and styles (tools/web_assets.py)
    produced: set[str] = {PARAMS_CHECK_FILE}
    for stage in STAGES:
        for dependency in stage_paths(stage, "deps", dataset):
            if dependency in written_by_people:
                assert stage == written_by_people[dependency], stage
            elif is_code(dependency):
                assert (PROJECT_ROOT / dependency).exists(), dependency  # and tests/test_code_deps.py
            else:
                assert any(dependency == out or dependency.startswith(out + "/") for out in produced), dependency
        produced |= set().union(*(stage_paths(stage, section, dataset) for section in ("outs", "metrics", "plots")))


def test_every_stage_depends_on_its_own_module():
    for stage in STAGES:
        assert f"tasks/{stage}.py" in DVC_YAML[stage]["do"]["deps"]


@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist-sample", "custom", "mnist"])
def test_every_declared_param_exists_in_params_yaml(dataset):
    document = project_params_document()
    for stage in STAGES:
        for key in DVC_YAML[stage]["do"].get("params", []):
            if isinstance(key, dict):  # another params file: the overrides file (the test below)
                continue
            node = document
            for part in key.replace("${item}", dataset).split("."):
                assert isinstance(node, dict) and part in node, f"{stage}: {key} for {dataset}"
                node = node[part]


def test_every_stage_that_reads_params_reads_its_datasets_overrides_file_whole():
    """A flow run's overrides (any key) must reach every stage DVC records params for, and dvc.lock must record
    them: the file tasks/common/paths.py names, tracked whole."""
    overrides_file = DatasetPaths(Path("."), "${item}").overrides_file.as_posix()
    for stage in STAGES:
        declared = DVC_YAML[stage]["do"].get("params", [])
        files = [entry for entry in declared if isinstance(entry, dict)]
        assert files == ([{overrides_file: None}] if declared else []), stage


def test_prefect_tasks_carry_the_stage_names():
    from flows import stages as prefect_tasks

    assert tuple(getattr(prefect_tasks, stage).name for stage in STAGES) == STAGES


def test_top_level_curves_cover_exactly_the_listed_datasets():
    listed = project_params_document()["datasets"]
    for plot in DVC_FILE["plots"]:
        (definition,) = plot.values()
        expected = {str(DatasetPaths(PROJECT_ROOT, name).training_history_file.relative_to(PROJECT_ROOT))
                    for name in listed}
        assert set(definition["y"]) == expected


def test_each_listed_datasets_production_model_is_a_registered_artifact():
    listed = project_params_document()["datasets"]
    artifacts = DVC_FILE["artifacts"]

    assert sorted(artifacts) == sorted(f"{name}-model" for name in listed)
    for name in listed:
        expected = DatasetPaths(PROJECT_ROOT, name).production_model_file.relative_to(PROJECT_ROOT)
        assert artifacts[f"{name}-model"]["path"] == str(expected) and artifacts[f"{name}-model"]["type"] == "model"


@pytest.mark.parametrize("dataset", ["fashion-mnist", "custom"])
def test_report_depends_on_every_file_it_reads(dataset):
    from tasks.report import required_inputs

    paths = DatasetPaths(PROJECT_ROOT, dataset)
    declared = stage_paths("report", "deps", dataset)
    for path, _ in [*required_inputs(paths), (paths.promotion_file, "promote")]:
        relative = str(path.relative_to(PROJECT_ROOT))
        assert any(relative == dep or relative.startswith(dep + "/") for dep in declared), relative


@pytest.mark.parametrize("dataset", project_params_document()["datasets"])
def test_each_listed_datasets_inbox_drift_folder_and_overrides_are_in_git_so_a_fresh_clone_has_the_dependencies(
        dataset):
    """DVC refuses to run a stage whose dependency is missing, and git keeps no empty folder. The overrides file
    (`{}`) is a params file of the dataset's stages: a clone, and `dvc exp run --temp`'s copy, take it from git."""
    from tasks.common.paths import DRIFT_PLACEHOLDER, INBOX_PLACEHOLDER

    paths = DatasetPaths(PROJECT_ROOT, dataset)
    for placeholder in (paths.inbox_dir / INBOX_PLACEHOLDER, paths.drift_acceptance_dir / DRIFT_PLACEHOLDER,
                        paths.overrides_file):
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(placeholder)], cwd=PROJECT_ROOT,
                                 capture_output=True, check=False)
        assert tracked.returncode == 0, f"{placeholder} is not in git"


def test_every_dataset_key_dvc_tracks_is_required_by_the_config_and_nothing_else_is():
    """DVC refuses a stage whose param is missing from params.yaml; the config asks for exactly those keys, so a
    user's new dataset fails with the config's message, not DVC's."""
    from tasks.common.config import DatasetParams

    tracked = {key.split(".")[2] for stage in STAGES for key in DVC_YAML[stage]["do"].get("params", [])
               if isinstance(key, str) and key.startswith("data.${item}.")}
    required = {name for name, field in DatasetParams.model_fields.items() if field.is_required()}
    assert tracked == required


def as_the_project_committed(path) -> str:
    """`path` as the project's own last commit of it left it, not a deployment run's: in a production checkout the
    runs commit their reports (messages `<dataset>: ...`, versioning/commits.py), and the tests must not depend
    on what they committed (issue 27 item 11: this test failed three times in such a checkout)."""
    import subprocess

    relative = str(path.relative_to(PROJECT_ROOT))
    log = subprocess.run(["git", "log", "--format=%H%x00%s", "--", relative], cwd=PROJECT_ROOT, capture_output=True,
                         text=True).stdout.splitlines()
    dataset = path.parent.name
    ours = next((line.split("\0")[0] for line in log if not line.split("\0")[1].startswith(f"{dataset}: ")), None)
    if ours is None:  # not a git checkout, or never committed: the file as it is
        return path.read_text()
    return subprocess.run(["git", "show", f"{ours}:{relative}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("dataset", project_params_document()["datasets"])
def test_the_committed_reports_are_a_first_runs_so_a_fresh_clones_make_run_leaves_git_clean(dataset):
    """Issue 16: a fresh clone has no champion, so its `make run` promotes with "no champion yet" and checks no
    drift; a committed promotion.json written with a champion in place made `git status` dirty afterwards.
    (Regenerate them with `rm -rf models/*/production && dvc repro -f -s drift@<dataset> && dvc repro`.)
    Read as the project committed them: runs of the deployments commit theirs on top in production checkouts."""
    import json

    paths = DatasetPaths(PROJECT_ROOT, dataset)
    promotion = json.loads(as_the_project_committed(paths.promotion_file))
    drift = json.loads(as_the_project_committed(paths.drift_file))
    assert promotion["promoted"] and promotion["reason"].endswith("no champion yet"), promotion["reason"]
    assert promotion["champion_accuracy"] is None
    assert drift["outcome"].startswith("no drift check: no champion yet"), drift["outcome"]


def test_dvc_lock_records_the_code_params_and_commands_in_git_as_they_are():
    """dvc.lock must record what git holds: a code file, params file or command it records otherwise makes a fresh
    clone's `make run` run that stage and every later one again (once a stale hash of tasks/train.py made every
    clone retrain every dataset). Data dependencies are not checked (a clone has none until it runs or pulls), nor
    the inbox (files wait there for the next run). After an edit: run the pipeline, which records them."""
    import json
    import sys

    status = json.loads(subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=PROJECT_ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    in_git = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()

    def versioned(path: str) -> bool:
        if path.startswith(("data/inbox/", "data/sources/")):  # files waiting; a link to this machine's data
            return False
        return any(name == path or name.startswith(f"{path}/") for name in in_git)

    stale = [f"{stage}: {change}" for stage, changes in status.items() for change in changes
             if isinstance(change, str) and change != "always changed"]
    stale += [f"{stage}: {path} {what}" for stage, changes in status.items() for change in changes
              if isinstance(change, dict) for path, what in change.get("changed deps", {}).items() if versioned(path)]
    assert not stale, stale

