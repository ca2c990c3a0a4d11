"""The `check_params` stage: params.yaml is checked once, before any stage whose outputs DVC would remove, and
each dataset's source is put where DVC watches it.

DVC removes a stage's outputs before it runs the stage's command. Every stage refuses a bad params.yaml
(`train.unitz: 128`, `train.epochs: -1`) with a one-line ConfigError, but under `dvc repro` that came after DVC had
removed the stage's model and reports. So every stage in dvc.yaml depends on this stage's marker file: `dvc repro`
runs this check first and stops at a bad params.yaml with nothing removed. While params.yaml is valid the marker's
bytes never change, so an edited value still reruns only the stages that read it. `dvc repro --single-item
<stage>` skips the check (README "Configuration"). The Prefect flow checks params.yaml before its first task.

It also points `data/sources/<dataset>` at the dataset's local_dir (a folder holding only a placeholder when it has
none, or when the folder is missing here). The download stage depends on that link, so `dvc repro` sees images
added to a local_dir as it sees the inbox: DVC hashes what the link leads to. The links are in git, so a clone has
them before anything runs; `make run` re-points them first, for a machine whose folders differ.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tasks.common.config import Params, load_params, write_overrides
from tasks.common.errors import ConfigError
from tasks.common.fileio import write_text_atomic
from tasks.common.paths import PARAMS_CHECK_FILE, PARAMS_FILE, SOURCE_PLACEHOLDER, DatasetPaths

MARKER_TEXT = ("params.yaml passed tasks.common.config's checks. Every stage depends on this file, so `dvc repro`\n"
               "checks params.yaml before it removes any stage's outputs (tasks/check_params.py).\n")


def check_params(params_file: Path, marker_file: Path, root: Path | None = None) -> Params:
    """Validate `params_file` (ConfigError naming the key if it is bad); point the listed datasets' source links
    under `root` (when given) at their local_dir; then write the marker, same bytes always."""
    params = load_params(params_file)
    if root is not None:
        link_sources(Path(root), params)
    write_marker(Path(marker_file))
    return params


def write_marker(marker_file: Path) -> None:
    """The marker every stage depends on; rewritten only when its bytes differ."""
    if not marker_file.is_file() or marker_file.read_text(encoding="utf-8") != MARKER_TEXT:
        write_text_atomic(marker_file, MARKER_TEXT)


def link_sources(root: Path, params: Params) -> None:
    """Make each listed dataset's data/sources/<dataset> lead to its local_dir. A relative local_dir (from `root`)
    gives a relative link, so the link in git holds in a clone at any path, as params.yaml does. Also make the
    dataset's overrides file (`{}`) where there is none: each of its stages lists it as a params file."""
    for name in params.datasets:
        local_dir, link = params.dataset(name).local_dir, DatasetPaths(root, name).source_link
        if local_dir is None or not (root / local_dir).is_dir():
            point_link(link, None)
        elif local_dir.is_absolute():
            point_link(link, local_dir)
        else:
            point_link(link, Path(os.path.relpath(root / local_dir, link.parent)))
        write_overrides(DatasetPaths(root, name), None, only_if_missing=True)  # a new dataset's `{}`, for git


def point_link(link: Path, target: Path | None) -> None:
    """`link` becomes a symbolic link to `target` (atomically), or, when `target` is None, a folder holding only
    SOURCE_PLACEHOLDER (git keeps no empty folder)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and target is not None and os.readlink(link) == str(target):
        return
    if target is None:
        if link.is_symlink():
            link.unlink()
        link.mkdir(exist_ok=True)
        (link / SOURCE_PLACEHOLDER).touch()
        return
    staged = link.with_name(f".{link.name}.link")
    staged.unlink(missing_ok=True)
    os.symlink(target, staged)
    if link.is_dir() and not link.is_symlink():
        (link / SOURCE_PLACEHOLDER).unlink(missing_ok=True)
        link.rmdir()  # the placeholder folder of a dataset that had no local_dir
    os.replace(staged, link)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.check_params", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE), help="params file (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: current directory)")
    arguments = parser.parse_args(argv)
    try:
        check_params(arguments.params, arguments.root / PARAMS_CHECK_FILE, arguments.root.resolve())
    except ConfigError as error:
        print(f"check_params failed: ConfigError: {error} (nothing was removed: no stage ran)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
