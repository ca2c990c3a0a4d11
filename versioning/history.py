"""`make history DATASET=...`: what each run did to a dataset, read from the commits the runs made.

Every version is a commit (versioning/commits.py): a deployment run that changed something commits dvc.lock and
the dataset's reports with the message `<dataset>: <what started it>: data <version>; <decision>`. So the history
needs no file of its own that a run would have to write (a skipped run, which commits nothing, leaves `git status`
and `dvc status` clean), it survives a clone, and `dvc pull` brings back each version's model. Per commit:
when, what started the run, the data version, the promotion decision (from the message), the test accuracy
(reports/<dataset>/metrics.json at that commit), the model's hash (dvc.lock at that commit), and the training
params that differ from today's params.yaml (dvc.lock records each run's own, overrides included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.common.config import load_params
from tasks.common.errors import ConfigError
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.lib.run_history import RunRecord, read_history
from tasks.lib.run_log import write_run_log


def format_history(records: list[RunRecord]) -> str:
    if not records:
        return "no run has committed a version of this dataset yet (runs of the deployments commit; docs/OPERATIONS.md)"
    lines = [f"{'when (UTC)':25} {'commit':10} {'test acc':8} {'model':8}  data / started by / decision / params"]
    for record in records:
        accuracy = "-" if record.test_accuracy is None else f"{record.test_accuracy:.4f}"
        changed = ", ".join(f"{key}={value}" for key, value in sorted(record.params_changed.items()))
        lines.append(f"{record.when:25} {record.commit:10} {accuracy:8} {(record.model_md5 or '-')[:8]:8}  "
                     f"data {record.data_version} / {record.trigger} / {record.decision}"
                     + (f" / params: {changed}" if changed else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m versioning.history", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    arguments = parser.parse_args(argv)
    root = Path.cwd()
    try:
        load_params(root / PARAMS_FILE).dataset(arguments.dataset)
    except ConfigError as error:
        print(f"history failed: ConfigError: {error}", file=sys.stderr)
        return 1
    print(format_history(read_history(root, arguments.dataset)))
    write_run_log(DatasetPaths(root, arguments.dataset))  # the report page's history too (tasks/lib/run_log.py)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
