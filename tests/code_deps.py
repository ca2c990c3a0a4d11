"""The project modules a stage runs, found by reading its source, not by running it.

Every `import` and `from ... import` counts, at module level or inside a function (the stages import Great
Expectations, matplotlib, the callbacks and other project modules lazily; a check at runtime would miss those).
Only modules of the project's own packages are followed, transitively.

Package `__init__.py` files are left out: they hold no code (tests/test_code_deps.py checks that), so editing one
cannot change what a stage writes, and listing them would re-run every stage when a docstring changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT_PACKAGES = ("tasks", "flows", "orchestration", "versioning", "tools")


def module_file(root: Path, module: str) -> Path | None:
    """The project source file of a dotted module name, or None when it is not the project's."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source_file: Path, module: str) -> set[str]:
    """Dotted names of everything `source_file` (the module `module`) imports, anywhere in its body."""
    package = module if source_file.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source_file.read_text(), filename=str(source_file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from tasks import lock` is a module
    return names


def code_dependencies(root: Path, module: str) -> set[str]:
    """Paths, relative to `root`, of the project modules `module` runs, itself included, transitively."""
    found: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        source = module_file(root, name)
        if source is None or source in found:
            continue
        found.add(source)
        pending.extend(imported_modules(source, name))
    return {str(path.relative_to(root)) for path in found if path.name != "__init__.py"}


SHARED_FOLDER = "tasks/common"


def declared_covers(declared: str, module_path: str) -> bool:
    """Whether the dvc.yaml dependency `declared` (a file or a folder) holds `module_path`."""
    return module_path == declared or module_path.startswith(declared.rstrip("/") + "/")


def is_code(dependency: str) -> bool:
    return dependency.split("/")[0] in PROJECT_PACKAGES


def check_stage_deps(root: Path, stage: str, declared: list[str]) -> list[str]:
    """Problems with the code dependencies dvc.yaml declares for `stage`: a module it runs that no dependency
    covers, or a declared module it does not run; empty when they agree."""
    runs = code_dependencies(root, f"tasks.{stage}")
    code = [dependency for dependency in declared if is_code(dependency)]
    problems = [f"{stage}: runs {module} but dvc.yaml does not list it (nor a folder holding it) in its deps"
                for module in sorted(runs) if not any(declared_covers(dependency, module) for dependency in code)]
    problems += [f"{stage}: dvc.yaml lists {dependency} in its deps, but the stage does not import it"
                 for dependency in code if dependency != SHARED_FOLDER and dependency not in runs]
    return problems
