"""Accept a dataset's drift: `python -m tools.accept_drift --dataset D --reason "why"` (`make accept-drift`).

Writes data/drift/<dataset>/accepted.json (git-tracked: commit it, or let the next deployment run commit it) with
the data as it is now, who accepted it, when and why. The next run trains on it instead of blocking again, and
later drops that look like it pass as well (tasks/drift.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.common.config import load_params
from tasks.common.errors import PipelineError
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.drift import accept_drift
from tasks.lib.data_profile import describe_row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.accept_drift", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--reason", required=True, help="why this data is right (kept with the acceptance)")
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE))
    arguments = parser.parse_args(argv)
    try:
        params = load_params(arguments.params)
        paths = DatasetPaths(Path.cwd(), arguments.dataset)
        acceptance = accept_drift(paths, params.listed_dataset(arguments.dataset), params.drift, arguments.reason)
    except PipelineError as error:
        print(f"accept-drift failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"{arguments.dataset}: drift accepted by {acceptance.by} at {acceptance.accepted_at} "
          f"({'; '.join(describe_row(row) for row in acceptance.measures)}); reason: {acceptance.reason}")
    print(f"recorded in {paths.drift_acceptance_file.relative_to(paths.root)}: the next run trains on this data")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
