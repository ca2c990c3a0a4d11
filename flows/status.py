"""`make status`: is scheduled retraining working, without reading log files.

It prints the server's health, the worker, each deployment with its schedules and next scheduled run, the last
run of each deployment, and the errors the server's services logged in the last hour. It exits 1 when the server
does not answer, no worker is online, or a service logged an error, so that cron or a monitor can call it.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flows.serve import WORK_POOL, Service, is_running
from flows.server_log import read_service_errors

ERROR_WINDOW = timedelta(hours=1)
FINISHED_OR_RUNNING = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED", "RUNNING", "CANCELLING"]


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    schedules: list[str]
    next_run: str
    last_run: str
    waiting_for_a_run: bool = False  # an active schedule, and no scheduled run yet


@dataclass(frozen=True)
class ServiceStatus:
    server: str
    server_up: bool
    workers: list[str]
    worker_online: bool
    deployments: list[DeploymentStatus]
    errors: list[str]
    log_file: str

    @property
    def healthy(self) -> bool:
        return self.server_up and self.worker_online and not self.errors

    @property
    def settled(self) -> bool:
        """Healthy, and every active schedule has its next run created."""
        return self.healthy and not any(deployment.waiting_for_a_run for deployment in self.deployments)


def read_status(service: Service, now: datetime | None = None) -> ServiceStatus:
    """What `make status` reports for `service`; the deployments are read only when the server answers."""
    now = now or datetime.now()
    errors = [error.summary() for error in read_service_errors(service.log_file("server"), since=now - ERROR_WINDOW)]
    server_up, server = _health(service)
    workers, worker_online, deployments = [], False, []
    if server_up:
        workers, worker_online, deployments = _read_api(service)
    if not is_running(service, "worker"):
        workers.append(f"no worker process of `make serve` ({service.pid_file('worker')})")
    return ServiceStatus(server, server_up, workers, worker_online, deployments, errors,
                         str(service.log_file("server")))


def wait_until_settled(service: Service, timeout_seconds: float = 60) -> ServiceStatus:
    """`read_status` once the worker is online and the scheduler has created each active schedule's next run
    (both take a few seconds after `make serve`), or as it stands after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    status = read_status(service)
    while not status.settled and time.monotonic() < deadline:
        time.sleep(2)
        status = read_status(service)
    return status


def _health(service: Service) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"{service.api_url}/health", timeout=5) as response:
            return response.status == 200, f"{service.api_url}: healthy"
    except OSError as error:
        return False, f"{service.api_url}: not answering ({error})"


def _read_api(service: Service) -> tuple[list[str], bool, list[DeploymentStatus]]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(WORK_POOL)
        described = [f"{worker.name} in pool '{WORK_POOL}': {worker.status.value.lower()}, last heartbeat "
                     f"{_when(worker.last_heartbeat_time)}" for worker in workers]
        online = any(worker.status.value == "ONLINE" for worker in workers)
        deployments = [_deployment_status(client, deployment)
                       for deployment in client.read_deployments() if deployment.work_pool_name == WORK_POOL]
    return described or [f"no worker has polled pool '{WORK_POOL}'"], online, deployments


def _deployment_status(client, deployment) -> DeploymentStatus:
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.sorting import FlowRunSort

    def first_run(state_types: list[str], sort: FlowRunSort):
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=state_types))),
            sort=sort, limit=1)
        return runs[0] if runs else None

    schedules = [f"{_describe(entry.schedule)}{'' if entry.active else ' (paused)'}" for entry in deployment.schedules]
    active = not deployment.paused and any(entry.active for entry in deployment.schedules)
    upcoming = first_run(["SCHEDULED"], FlowRunSort.EXPECTED_START_TIME_ASC)
    last = first_run(FINISHED_OR_RUNNING, FlowRunSort.START_TIME_DESC)
    flow_name = client.read_flow(deployment.flow_id).name
    return DeploymentStatus(
        name=f"{flow_name}/{deployment.name}" + (" (paused)" if deployment.paused else ""),
        schedules=schedules or ["no schedule"],
        next_run=f"{upcoming.name} at {_when(upcoming.expected_start_time)}" if upcoming else "none scheduled",
        last_run=(f"{last.name}: {last.state_name} (started {_when(last.start_time)})" if last else "none yet"),
        waiting_for_a_run=active and upcoming is None)


def _describe(schedule) -> str:
    if getattr(schedule, "cron", None):
        return f"cron '{schedule.cron}' {schedule.timezone or 'UTC'}"
    if getattr(schedule, "interval", None):
        return f"every {schedule.interval.total_seconds():g} s"
    return str(schedule)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(status: ServiceStatus) -> str:
    lines = [f"server:  {status.server}", "worker:  " + "\n         ".join(status.workers), "deployments:"]
    for deployment in status.deployments:
        lines += [f"  {deployment.name}", f"    schedule:  {', '.join(deployment.schedules)}",
                  f"    next run:  {deployment.next_run}", f"    last run:  {deployment.last_run}"]
    for deployment in status.deployments:
        if deployment.waiting_for_a_run:
            lines.append(f"  {deployment.name}: its schedule is active but the scheduler created no run")
    if status.server_up and not status.deployments:
        lines.append(f"  none on pool '{WORK_POOL}' (make serve deploys them)")
    lines.append(f"service errors in the last {ERROR_WINDOW.total_seconds() / 3600:g} h ({status.log_file}): "
                 + (f"{len(status.errors)}" if status.errors else "none"))
    lines += [f"  {error}" for error in status.errors]
    lines.append("status: " + ("OK" if status.healthy else "NOT OK"))
    return "\n".join(lines)
