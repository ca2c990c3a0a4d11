"""New data landed: `make ingest DATASET=shoes FROM=/srv/new-shoes` copies a folder of labelled images
(`{train,test}/<class>/*.png|*.jpg`) into the dataset's inbox, then tells the served Prefect with one event. The
dataset's deployment trigger (orchestration/deployments.py) runs that dataset's deployment on the event, without
waiting for its schedule, under the deployment's concurrency limit (a run already going keeps its slot; this one
waits).

Without FROM, the images already copied into data/inbox/<dataset>/ are announced. Without a served Prefect (no
`make serve`), nothing is emitted: the files wait for the next `dvc repro`, `make flow` or scheduled run. For a
deployment in clone mode (workers without this checkout), the folder goes to the DVC remote's inbox instead
(versioning/shared_inbox.py), where the next run of the dataset, on whichever worker, takes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from orchestration.deployments import DROP_EVENT, dataset_resource, require_deployment
from orchestration.serve import check_answers
from versioning.shared_inbox import send_drop
from tasks.common.config import load_params
from tasks.common.errors import PipelineError
from tasks.common.paths import INBOX_PLACEHOLDER, PARAMS_FILE, DatasetPaths

def copy_into_inbox(source: Path, inbox: Path) -> int:
    """Copy every file under `source` to the same place under `inbox`, each under a temporary name renamed when
    complete (ingest leaves `*.part` files alone); return how many were copied."""
    if not source.is_dir():
        raise PipelineError(f"{source}: no such folder; expected {source}/{{train,test}}/<class>/*.png")
    files = [path for path in sorted(source.rglob("*")) if path.is_file() and not path.name.startswith(".")]
    taken = [str(inbox / path.relative_to(source)) for path in files if (inbox / path.relative_to(source)).exists()]
    if taken:  # a file waiting under the same name would be replaced before it was ingested
        raise PipelineError(f"{len(taken)} file(s) of {source} would replace files still waiting in the inbox, e.g. "
                            f"{taken[0]}; nothing was copied: rename them, or copy after the next ingest")
    copied = 0
    for path in files:
        target = inbox / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        copied += 1
    return copied


def waiting_files(inbox: Path) -> int:
    return sum(1 for path in inbox.rglob("*") if path.is_file() and path.name != INBOX_PLACEHOLDER)


def served_api() -> str | None:
    """The configured Prefect API (`make serve` sets it in the project's profile), or None."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def announce(dataset: str, files: int) -> str | None:
    """Emit the drop event to the served Prefect; its id, or None when no Prefect server is configured."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    if not served_api():
        return None
    event = emit_event(event=DROP_EVENT, resource={"prefect.resource.id": dataset_resource(dataset),
                                                   "prefect.resource.name": dataset}, payload={"files": files})
    EventsWorker.drain_all(timeout=30)  # sent before this process exits
    return str(event.id) if event else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.inbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a dataset listed under `datasets` in params.yaml")
    parser.add_argument("--from", dest="source", type=Path, help="a folder {train,test}/<class>/ to copy in first")
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE))
    arguments = parser.parse_args(argv)
    try:
        load_params(arguments.params).listed_dataset(arguments.dataset)
        api_url = served_api()
        clone_mode = False
        if api_url:  # an event that no deployment hears would leave the files waiting: refuse before copying
            check_answers(api_url)  # a served Prefect killed without `make stop`: one line
            clone_mode = require_deployment(api_url, arguments.dataset)
        if clone_mode:  # its runs start from a fresh clone on a worker: the drop goes to the DVC remote's inbox
            if not arguments.source:
                raise PipelineError("its deployment runs in clone mode, on workers that do not see this checkout's "
                                    "inbox: give FROM=<folder> to send the images to the DVC remote's inbox")
            url, sent = send_drop(Path.cwd(), arguments.dataset, arguments.source)
            event = announce(arguments.dataset, sent)
            print(f"sent {sent} file(s) to the shared inbox {url}; event {DROP_EVENT} {event} sent: the "
                  f"{arguments.dataset} deployment runs now on a worker (or after the run in progress)")
            return 0
        inbox = DatasetPaths(Path.cwd(), arguments.dataset).inbox_dir
        copied = copy_into_inbox(arguments.source, inbox) if arguments.source else 0
        files = waiting_files(inbox)
        if not files:
            raise PipelineError(f"{inbox}: no images waiting; copy them into {inbox}/{{train,test}}/<class>/ or "
                                "give FROM=<folder>")
        event = announce(arguments.dataset, files)
    except PipelineError as error:
        print(f"ingest failed for {arguments.dataset}: {error}", file=sys.stderr)
        return 1
    note = f"copied {copied} file(s); " if arguments.source else ""
    if event is None:
        print(f"{note}{files} file(s) wait in {inbox}; no served Prefect (make serve) to tell, so they are ingested "
              "by the next `dvc repro`, `make flow` or scheduled run")
    else:
        print(f"{note}{files} file(s) wait in {inbox}; event {DROP_EVENT} {event} sent: the {arguments.dataset} "
              "deployment runs now (or after the run in progress)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
