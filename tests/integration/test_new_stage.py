"""Adding a stage touches only its module, its paths, dvc.yaml, the flow's wiring and its tests (issue 13).

In a copy of the repository, a throwaway stage `inventory` (it lists the raw files of a dataset with their
sizes) is added by editing exactly those places, and no list of stages or outputs anywhere else. The drift
tests of the copy pass (dvc.yaml against tasks/common/paths.py, code deps against the imports, Prefect task
names), and `dvc repro` runs the new stage. Without its dvc.yaml entry, the drift tests fail.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.integration.repo import copy_repository, run

pytestmark = pytest.mark.integration

STAGE_MODULE = '''
"""A throwaway stage: the raw files of a dataset and their sizes, as JSON."""

from tasks.common.fileio import write_json_atomic
from tasks.common.paths import DatasetPaths


def write_inventory(paths: DatasetPaths) -> dict:
    inventory = {path.name: path.stat().st_size for path in sorted(paths.raw_dir.iterdir())}
    write_json_atomic(paths.inventory_file, inventory)
    return inventory


def main(argv=None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("inventory", argv, lambda paths, params: write_inventory(paths))


if __name__ == "__main__":
    raise SystemExit(main())
'''
DVC_ENTRY = '''
  inventory:
    foreach: ${datasets}
    do:
      cmd: python -m tasks.inventory ${item}
      deps:
        - data/params_check.txt
        - tasks/inventory.py
        - tasks/common
        - data/raw/${item}
      outs:
        - reports/${item}/inventory.json:
            cache: false
'''
PREFECT_TASK = '''

@task(name="inventory", cache_policy=NO_CACHE)
def inventory(paths: DatasetPaths) -> dict:
    from tasks.inventory import write_inventory

    with _timed(paths, "inventory"):
        return write_inventory(paths)
'''
# The structure checks. Not the one that dvc.lock is fresh: a stage just added changes tasks/common, which every
# stage depends on, so until the pipeline runs, dvc.lock records the code before the edit (as it should say).
DRIFT_TESTS = ["tests/test_dvc_yaml.py", "tests/test_code_deps.py",
               "--deselect", "tests/test_dvc_yaml.py::test_dvc_lock_records_the_code_params_and_commands_in_git_as_they_are"]


def replace_once(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def add_inventory_stage(repo, with_dvc_entry: bool = True) -> None:
    (repo / "tasks" / "inventory.py").write_text(STAGE_MODULE.lstrip())
    paths_file = repo / "tasks" / "common" / "paths.py"
    replace_once(paths_file, '    "report": ("report_file", "confusion_matrix_png", "misclassified_png"),\n',
                 '    "report": ("report_file", "confusion_matrix_png", "misclassified_png"),\n'
                 '    "inventory": ("inventory_file",),\n')
    replace_once(paths_file, "    @property\n    def report_file(self) -> Path:",
                 "    @property\n    def inventory_file(self) -> Path:\n"
                 "        return self.reports_dir / \"inventory.json\"\n\n"
                 "    @property\n    def report_file(self) -> Path:")
    if with_dvc_entry:
        replace_once(repo / "dvc.yaml", "\n# Training curves", DVC_ENTRY + "\n# Training curves")
    with open(repo / "flows" / "stages.py", "a") as stream:
        stream.write(PREFECT_TASK)
    replace_once(repo / "flows" / "training.py", "    _run(report, paths, dataset_params, params.evaluate)\n",
                 "    _run(report, paths, dataset_params, params.evaluate)\n    _run(stages.inventory, paths)\n")
    replace_once(repo / "flows" / "training.py", "from flows.stages import",
                 "from flows import stages\nfrom flows.stages import")


def as_it_is(document):
    pass


def test_a_new_stage_needs_only_its_own_places_and_dvc_runs_it(tmp_path):
    repo = copy_repository(tmp_path / "repo", as_it_is)
    add_inventory_stage(repo)
    run(["git", "add", "-A"], repo)

    drift = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DRIFT_TESTS], repo, check=False)
    assert drift.returncode == 0, drift.stdout[-3000:]
    assert "inventory" in run(["dvc", "stage", "list"], repo).stdout

    run(["dvc", "repro", "inventory@mnist-sample"], repo)

    inventory = json.loads((repo / "reports/mnist-sample/inventory.json").read_text())
    assert sorted(inventory) == sorted(path.name for path in (repo / "data/raw/mnist-sample").iterdir())
    assert "inventory@mnist-sample" in (repo / "dvc.lock").read_text()


def test_without_its_dvc_yaml_entry_the_drift_tests_fail(tmp_path):
    repo = copy_repository(tmp_path / "repo", as_it_is)
    add_inventory_stage(repo, with_dvc_entry=False)

    drift = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DRIFT_TESTS], repo, check=False)

    assert drift.returncode != 0
    assert "FAILED tests/test_dvc_yaml.py::test_stage_names_and_order_match_the_package" in drift.stdout
