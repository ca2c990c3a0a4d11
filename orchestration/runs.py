"""Which flow run last completed for a dataset, so a skipped run can say "nothing changed since run X"."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from versioning.dvc_state import locked_output_hash
from tasks.common.fileio import write_json_atomic
from tasks.common.paths import DatasetPaths


def write_last_run(paths: DatasetPaths) -> dict:
    from prefect.runtime import flow_run

    record = {"flow_run_name": flow_run.name, "flow_run_id": str(flow_run.id),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "production_model_md5": locked_output_hash(paths.root, "promote", paths.dataset)}
    write_json_atomic(paths.last_run_file, record)
    return record


def read_last_run(paths: DatasetPaths) -> dict | None:
    if not paths.last_run_file.exists():
        return None
    return json.loads(paths.last_run_file.read_text())
