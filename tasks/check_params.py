"""The `check_params` stage: params.yaml is checked once, before any stage whose outputs DVC would remove.

DVC removes a stage's outputs before it runs the stage's command. Every stage refuses a bad params.yaml
(`train.unitz: 128`, `train.epochs: -1`) with a one-line ConfigError, but under `dvc repro` that came after DVC had
removed the stage's model and reports. So every stage in dvc.yaml depends on this stage's marker file: `dvc repro`
runs this check first and stops at a bad params.yaml with nothing removed. While params.yaml is valid the marker's
bytes never change, so an edited value still reruns only the stages that read it. `dvc repro --single-item
<stage>` skips the check (README "Configuration"). The Prefect flow checks params.yaml before its first task.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.common.config import Params, load_params
from tasks.common.errors import ConfigError
from tasks.common.fileio import write_text_atomic
from tasks.common.paths import PARAMS_CHECK_FILE, PARAMS_FILE

MARKER_TEXT = ("params.yaml passed tasks.common.config's checks. Every stage depends on this file, so `dvc repro`\n"
               "checks params.yaml before it removes any stage's outputs (tasks/check_params.py).\n")


def check_params(params_file: Path, marker_file: Path) -> Params:
    """Validate `params_file` (ConfigError naming the key if it is bad); then write the marker, same bytes always."""
    params = load_params(params_file)
    marker_file = Path(marker_file)
    if not marker_file.is_file() or marker_file.read_text(encoding="utf-8") != MARKER_TEXT:
        write_text_atomic(marker_file, MARKER_TEXT)
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.check_params", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE), help="params file (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: current directory)")
    arguments = parser.parse_args(argv)
    try:
        check_params(arguments.params, arguments.root / PARAMS_CHECK_FILE)
    except ConfigError as error:
        print(f"check_params failed: ConfigError: {error} (nothing was removed: no stage ran)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
