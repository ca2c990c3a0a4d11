"""The code each stage runs, read from its source, is exactly what dvc.yaml lists as the stage's code deps.

An edit to any module a stage imports, at module level or inside a function, makes `dvc status` report the stage
and `dvc repro` re-run it (issue 13: the model was kept after edits to tasks/model_file.py and others).
"""

from __future__ import annotations

import ast

import pytest
import yaml

from tasks.common.paths import STAGES
from tests.code_deps import SHARED_FOLDER, check_stage_deps, code_dependencies, is_code
from tests.conftest import PROJECT_ROOT

DVC_YAML = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def declared_deps(stage: str) -> list[str]:
    """The stage's deps in dvc.yaml; none for a stage missing there (test_dvc_yaml.py names it)."""
    return DVC_YAML.get(stage, {}).get("do", {}).get("deps", [])


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_lists_exactly_the_code_it_runs(stage):
    assert check_stage_deps(PROJECT_ROOT, stage, declared_deps(stage)) == []


@pytest.mark.parametrize(("stage", "dependency"), [(stage, dependency) for stage in STAGES
                                                   for dependency in declared_deps(stage) if is_code(dependency)])
def test_removing_any_code_dependency_is_caught(stage, dependency):
    without = [entry for entry in declared_deps(stage) if entry != dependency]

    problems = check_stage_deps(PROJECT_ROOT, stage, without)

    assert problems and all(f"{stage}: runs " in problem for problem in problems)
    assert all(problem.split(" runs ")[1].split()[0].startswith(dependency) for problem in problems), problems


def test_the_shared_folder_holds_only_modules_every_stage_runs():
    modules = {str(path.relative_to(PROJECT_ROOT)) for path in (PROJECT_ROOT / SHARED_FOLDER).glob("*.py")
               if path.name != "__init__.py"}
    for stage in STAGES:
        assert modules <= code_dependencies(PROJECT_ROOT, f"tasks.{stage}"), stage
        assert SHARED_FOLDER in declared_deps(stage), stage


def test_package_init_files_of_the_stages_hold_no_code():
    """They are left out of the scan (tests/code_deps.py), so they must hold nothing that could change a stage."""
    for init in [PROJECT_ROOT / "tasks" / "__init__.py", *(PROJECT_ROOT / "tasks").glob("*/__init__.py")]:
        body = ast.parse(init.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), init


def test_the_scan_finds_lazy_relative_and_from_package_imports(tmp_path):
    package = tmp_path / "tasks"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text('"""Stages."""\n')
    (package / "lib" / "__init__.py").write_text("")
    (package / "stage.py").write_text("import json\nfrom tasks.lib import eager\n\n"
                                      "def run():\n    from .lib.lazy import thing\n    return thing\n")
    (package / "lib" / "eager.py").write_text("from . import sibling\n")
    (package / "lib" / "sibling.py").write_text("")
    (package / "lib" / "lazy.py").write_text("class Thing:\n    def go(self):\n        import tasks.lib.deep\n")
    (package / "lib" / "deep.py").write_text("")
    (package / "lib" / "unused.py").write_text("")

    assert code_dependencies(tmp_path, "tasks.stage") == {
        "tasks/stage.py", "tasks/lib/eager.py", "tasks/lib/sibling.py", "tasks/lib/lazy.py", "tasks/lib/deep.py"}


def test_bytecode_beside_the_shared_folder_is_not_a_change(tmp_path):
    """DVC hashes a folder dependency whole: the .pyc files Python writes there must not count (.dvcignore)."""
    from dvc.repo import Repo

    with Repo(str(PROJECT_ROOT)) as repo:
        ignored = repo.dvcignore.is_ignored_file(str(PROJECT_ROOT / SHARED_FOLDER / "__pycache__" / "config.pyc"))
    assert ignored


def test_no_stage_imports_another_stage():
    """Stages share code through tasks/common and tasks/lib, and read each other's files through
    tasks/lib/outputs.py, never by importing each other."""
    for stage in STAGES:
        others = {f"tasks/{other}.py" for other in STAGES if other != stage}
        assert not others & code_dependencies(PROJECT_ROOT, f"tasks.{stage}"), stage


def test_the_params_check_stage_lists_exactly_the_code_it_runs():
    assert check_stage_deps(PROJECT_ROOT, "check_params", DVC_YAML["check_params"]["deps"]) == []


def project_imports() -> dict[str, set[str]]:
    """Each module of the project's packages -> the project modules it imports, at module level or in a function."""
    packages = ("tasks", "flows", "orchestration", "versioning", "tools", "benchmarks")
    modules = {".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__"): path
               for package in packages for path in (PROJECT_ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def test_versioning_imports_nothing_of_prefects_operations():
    """Issue 28 item 4: versioning (git, DVC, the registry) and Prefect's operations are rooms of their own; the
    operations use versioning, never the other way."""
    graph = project_imports()
    upward = sorted((module, imported) for module, imports in graph.items() if module.startswith("versioning")
                    for imported in imports if imported.startswith("orchestration"))
    assert upward == []
    assert any(imported.startswith("versioning") for module, imports in graph.items()
               if module.startswith("orchestration") for imported in imports)  # the graph sees both rooms


def test_no_import_cycle_among_the_projects_modules():
    """Issue 26/28: serve.py and status.py imported each other; no module may reach itself through its imports."""
    graph = project_imports()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append(" -> ".join(path[path.index(imported):] + [imported]))
            elif len(path) < 12:
                visit(imported, path + [imported])

    for module in sorted(graph):
        visit(module, [module])
    assert not cycles, sorted(set(cycles))[:10]
