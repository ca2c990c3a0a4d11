"""Every dataset listed in params.yaml as a Prefect deployment, made with Prefect's Python deployment API.

`make serve` calls `apply_deployments`. Each listed dataset gets the deployment `training-pipeline/<dataset>`:
- its schedule, `data.<dataset>.schedule` (Mondays at 03:00 UTC when left out, none when null);
- a trigger on its inbox event, which `make ingest` emits once per drop;
- one run at a time: a concurrency limit of 1 whose extra runs wait (ENQUEUE), and a work queue of its own with
  the same limit, so that waiting runs stay on the server untouched until the queue has room.
Nothing is written by hand per dataset: a dataset added to params.yaml is deployed by the next `make serve`, and a
dataset taken out of it loses its deployment then.

The same deployments on a Docker work pool (each flow run a container of docker/Dockerfile's image, the repository
bind-mounted at /workspace): `python -m orchestration.deployments --docker-image mnist-pipeline:latest`
(docs/SCALING.md). They are named `<dataset>-docker`, so both pools can be served by one server.

A pause is the operator's: redeploying never turns a paused schedule back on, even when the cron changed
(`prefect deployment schedule resume <deployment> <schedule id>`, or `--all`, turns it on again).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.common.config import Params, ScheduleParams

FLOW_NAME = "training-pipeline"
ENTRYPOINT = "flows/training.py:training_pipeline"
CODE_ROOT = Path(__file__).resolve().parents[1]
WORK_POOL = "training"
RUN_LIMIT = 1
# The event a drop emits and the resource it is about (orchestration/inbox.py): each deployment's trigger matches them.
DROP_EVENT = "pipeline.inbox.dropped"


def dataset_resource(dataset: str) -> str:
    return f"pipeline.dataset.{dataset}"


def deployment_name(dataset: str) -> str:
    """The name the CLI takes: `prefect deployment run training-pipeline/<dataset>`."""
    return f"{FLOW_NAME}/{dataset}"


@dataclass(frozen=True)
class Pool:
    """Where a deployment's flow runs happen: a work pool, its deployments' name suffix, the folder a flow run
    starts in (None: the repository that deployed), and the pool's job variables."""

    name: str = WORK_POOL
    suffix: str = ""
    directory: str | None = None
    job_variables: dict[str, Any] = field(default_factory=dict)
    # Clone mode: each flow run clones this git remote's branch into a fresh folder (Prefect's git_clone step)
    # and pushes back what it made (versioning/remote.py).
    git_remote: str | None = None
    branch: str = "main"
    # Whether a drop in the inbox (`make ingest`) runs this pool's deployment: the process pool's only, so that one
    # drop starts one run while both pools are deployed.
    triggered: bool = True


PROCESS_POOL = Pool()
DOCKER_POOL_NAME = "training-docker"
DOCKER_WORKSPACE = "/workspace"


def clone_pool(git_remote: str, branch: str) -> Pool:
    """The process pool, each flow run in a fresh clone of `git_remote` at `branch`: for workers on machines that
    do not hold the repository (docs/SCALING.md)."""
    from versioning.remote import REMOTE_RUN_VARIABLE

    return Pool(git_remote=git_remote, branch=branch, job_variables={"env": {REMOTE_RUN_VARIABLE: "1"}})


def docker_pool(image: str, root: Path) -> Pool:
    """Each flow run a container of `image` (the locked dependencies, docker/Dockerfile) with `root` bind-mounted at
    /workspace, so its outputs and dvc.lock land in the same checkout as with the process pool."""
    return Pool(name=DOCKER_POOL_NAME, suffix="-docker", directory=DOCKER_WORKSPACE, triggered=False,
                job_variables={
        "image": image, "image_pull_policy": "IfNotPresent", "volumes": [f"{root}:{DOCKER_WORKSPACE}"],
        # The server listens on the host's 127.0.0.1 only; the host network lets the container reach it.
        "network_mode": "host", "auto_remove": True,
        "env": {"DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}})


@dataclass(frozen=True)
class Applied:
    """What `apply_deployments` did: the deployments now on the server, those it removed, and the paused ones."""

    deployed: list[str]
    removed: list[str]
    paused: list[str]


def describe_schedule(schedule: ScheduleParams | None) -> str:
    if schedule is None:
        return "no schedule"
    if schedule.cron is not None:
        return f"cron '{schedule.cron}' ({schedule.timezone})"
    return f"every {schedule.interval:g} s"


def prefect_schedule(schedule: ScheduleParams, active: bool):
    from prefect.schedules import Cron, Interval

    if schedule.cron is not None:
        return Cron(schedule.cron, timezone=schedule.timezone, active=active)
    assert schedule.interval is not None  # ScheduleParams holds a cron or an interval
    return Interval(schedule.interval, active=active)


def check_schedules(params: Params) -> None:
    """Each listed dataset's schedule as Prefect reads it (a cron's fields, a time zone), or a PipelineError naming
    the key: `make serve` calls it before it starts anything."""
    from tasks.common.errors import ConfigError

    for dataset in params.datasets:
        schedule = params.dataset(dataset).schedule
        if schedule is None:
            continue
        try:
            prefect_schedule(schedule, active=True)
            zoneinfo.ZoneInfo(schedule.timezone)  # Prefect checks the time zone only when the server stores it
        except Exception as error:  # noqa: BLE001 - Prefect's ValueError or pydantic's ValidationError, one line
            why = " ".join(str(error).split())
            raise ConfigError(f"params.yaml: data.{dataset}.schedule: {describe_schedule(schedule)} is not a valid "
                              f"schedule: {why[:300]}") from None


def build_deployment(dataset: str, params: Params, root: Path, paused: bool, pool: Pool = PROCESS_POOL):
    """The RunnerDeployment of one dataset on `pool`: its flow runs start in `root` (or the pool's directory) and run
    the flow of flows/training.py on `dataset`."""
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events import DeploymentEventTrigger
    from prefect.runner.storage import GitRepository, LocalStorage
    from prefect.utilities.callables import parameter_schema_from_entrypoint

    schedule = params.dataset(dataset).schedule
    deployment = RunnerDeployment(
        name=f"{dataset}{pool.suffix}",
        flow_name=FLOW_NAME,
        entrypoint=ENTRYPOINT,
        description=f"Retrains the {dataset} classifier: {describe_schedule(schedule)}, on new data (make ingest) "
                    "and by hand; skips training when nothing changed.",
        parameters={"dataset": dataset},
        schedules=[prefect_schedule(schedule, active=not paused)] if schedule else [],
        concurrency_limit=RUN_LIMIT,  # a second run waits for the first (ENQUEUE), it is not dropped
        concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        triggers=[DeploymentEventTrigger(name=f"{dataset}: new data in its inbox", enabled=True,
                                         match={"prefect.resource.id": dataset_resource(dataset)},
                                         expect={DROP_EVENT})] if pool.triggered else [],
        work_pool_name=pool.name,
        work_queue_name=dataset,  # a queue of its own: its limit is this deployment's
        job_variables=dict(pool.job_variables),
        storage=(GitRepository(url=pool.git_remote, branch=pool.branch) if pool.git_remote
                 else LocalStorage(pool.directory or str(root))),
    )
    # The flow's parameters, read from its source (no import: flows/ imports orchestration/, not the other way).
    deployment._parameter_openapi_schema = parameter_schema_from_entrypoint(str(CODE_ROOT / ENTRYPOINT))
    return deployment


def apply_deployments(api_url: str, root: Path, params: Params, pool: Pool = PROCESS_POOL) -> Applied:
    """Create or update the deployment of every dataset in `params.datasets`, remove those of datasets no longer
    listed, and give each deployment's work queue its run limit. A deployment whose schedule the operator paused
    keeps it paused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, WorkPoolFilter, WorkPoolFilterName
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            existing = {deployment.name: deployment for deployment in client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool.name])))}
            for dataset in params.datasets:  # each queue's limit before its deployment can put runs in it
                try:
                    queue = client.read_work_queue_by_name(dataset, work_pool_name=pool.name)
                except ObjectNotFound:
                    client.create_work_queue(dataset, work_pool_name=pool.name, concurrency_limit=RUN_LIMIT)
                else:
                    client.update_work_queue(queue.id, concurrency_limit=RUN_LIMIT)
        names = [f"{dataset}{pool.suffix}" for dataset in params.datasets]
        paused = sorted(name for name, deployment in existing.items()
                        if name in names and any(not each.active for each in deployment.schedules))
        for dataset, name in zip(params.datasets, names):
            deployment = build_deployment(dataset, params, root, paused=name in paused, pool=pool)
            # a deployment paused as a whole (the UI's toggle, `pause_deployment`) stays paused too
            deployment.paused = bool(existing[name].paused) if name in existing else False
            deployment.apply(work_pool_name=pool.name)
        removed = sorted(set(existing) - set(names))
        with get_client(sync_client=True) as client:
            for name in removed:  # its trigger first: Prefect leaves a deployment's automations when it is deleted
                client.delete_resource_owned_automations(f"prefect.deployment.{existing[name].id}")
                client.delete_deployment(existing[name].id)
    paused_whole = [name for name in names if name in existing and existing[name].paused and name not in paused]
    return Applied(deployed=names, removed=removed, paused=sorted(paused + paused_whole))


def require_deployment(api_url: str, dataset: str) -> bool:
    """Raise a PipelineError saying what to do when the served Prefect has no deployment for `dataset`; whether it
    runs in clone mode (its runs clone the git remote on the workers, versioning/remote.py)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.common.errors import PipelineError

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name(dataset))
        except ObjectNotFound:
            raise PipelineError(f"the Prefect server at {api_url} has no deployment {deployment_name(dataset)}, so "
                                "nothing would run: run `make serve` again (it deploys every dataset listed in "
                                "params.yaml), then this command") from None
    return any("prefect.deployments.steps.git_clone" in step for step in deployment.pull_steps or [])


def main(argv: list[str] | None = None) -> int:
    """Deploy every listed dataset to the Docker work pool of the configured Prefect API (PREFECT_API_URL)."""
    import argparse
    import sys

    from prefect.settings import PREFECT_API_URL

    from tasks.common.config import load_params
    from tasks.common.errors import PipelineError
    from tasks.common.paths import PARAMS_FILE

    parser = argparse.ArgumentParser(prog="python -m orchestration.deployments", description=main.__doc__)
    parser.add_argument("--docker-image", required=True,
                        help="the image docker/Dockerfile built, e.g. mnist-pipeline:latest")
    arguments = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if not PREFECT_API_URL.value():
            raise PipelineError("no Prefect API configured: start one with `make serve`, or set PREFECT_API_URL")
        applied = apply_deployments(PREFECT_API_URL.value(), root, load_params(root / PARAMS_FILE),
                                    docker_pool(arguments.docker_image, root))
    except PipelineError as error:
        print(f"deploy failed: {error}", file=sys.stderr)
        return 1
    print(f"deployed to pool {DOCKER_POOL_NAME}: {', '.join(applied.deployed)}"
          + (f"; removed: {', '.join(applied.removed)}" if applied.removed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
