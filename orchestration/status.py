"""`make status`: is scheduled retraining working, without reading log files.

It prints the server's health, the worker, each deployment with its schedules and next scheduled run, the last
run of each deployment, the errors the server's services logged in the last hour, and every run notified more
than once in that hour or whose notification the webhook refused. It exits 1, naming each problem, when the server
or its API does not answer, no worker is online, `make serve`'s worker has exited, an active schedule has no run,
a service logged an error or a notification went twice or not at all, so that cron or a monitor can call it.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from orchestration.automations import notification_problems
from orchestration.deployments import WORK_POOL
from orchestration.service import Service, is_running
from orchestration.server_log import (HEARTBEAT_ACTION_ON_FINISHED_RUN, database_kind, read_routine_records,
                                      read_service_errors)

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
    workers: list[str]
    deployments: list[DeploymentStatus]
    errors: list[str]
    log_file: str
    problems: list[str]  # what makes it NOT OK, one line each
    notifications: tuple[str, ...] = ()  # runs notified more than once, notifications not delivered
    refused_crashes: int = 0  # the heartbeat automation refused on runs already ended (harmless, counted)

    @property
    def healthy(self) -> bool:
        return not self.problems


def read_status(service: Service, now: datetime | None = None) -> ServiceStatus:
    """What `make status` reports for `service`; the deployments are read only when the server answers. Errors
    count from an hour ago, or from when this server started if later (its log holds earlier servers' too)."""
    now = now or datetime.now(timezone.utc)
    since = max(now - ERROR_WINDOW, _started(service) or now - ERROR_WINDOW)
    records = read_service_errors(service.log_file("server"), since=since,
                                  database=database_kind(service.environment()))
    errors = [error.summary() for error in records]
    problems = [f"{len(errors)} service error(s) logged{_until(records)}"] if errors else []
    server_up, server = _health(service)
    workers: list = []
    deployments: list = []
    notifications: list[str] = []
    if not server_up:
        problems.append("the server does not answer")
    else:
        try:
            workers, worker_online, deployments, notifications = _read_api(service, since)
        except Exception as error:  # a server still starting, or failing: say so rather than end in a traceback
            problems.append(f"the API failed: {type(error).__name__}: {error}")
        else:
            problems += [] if worker_online else ["no worker is online"]
            problems += [f"{deployment.name}: its schedule is active but the scheduler created no run"
                         for deployment in deployments if deployment.waiting_for_a_run]
            problems += [f"{len(notifications)} notification problem(s)"] if notifications else []
    if service.pid_file("worker").exists() and not is_running(service, "worker"):
        workers.append(f"the worker `make serve` started has exited ({service.pid_file('worker')})")
        problems.append("the worker of `make serve` has exited")
    refused = read_routine_records(service.log_file("server"), HEARTBEAT_ACTION_ON_FINISHED_RUN, since)
    return ServiceStatus(server, workers, deployments, errors, str(service.log_file("server")), problems,
                         tuple(notifications), len(refused))


def _until(records: list) -> str:
    """When logged errors stop making the status NOT OK: an hour after the last, or when the server starts again."""
    times = [record.time for record in records if record.time]
    if not times:
        return " (until `make serve` starts the server again)"
    return (f" (counted until {_when(max(times) + ERROR_WINDOW)}, an hour after the last, or until `make serve` "
            "starts the server again)")


def wait_until_settled(service: Service, timeout_seconds: float = 60) -> ServiceStatus:
    """`read_status` once it is OK: the worker online and each active schedule's next run created (both take a
    few seconds after `make serve`), or as it stands after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    status = read_status(service)
    while not status.healthy and time.monotonic() < deadline:
        time.sleep(2)
        status = read_status(service)
    return status


def _started(service: Service) -> datetime | None:
    pid_file = service.pid_file("server")
    return datetime.fromtimestamp(pid_file.stat().st_mtime, timezone.utc) if pid_file.exists() else None


def _health(service: Service) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"{service.api_url}/health", timeout=5) as response:
            return response.status == 200, f"{service.api_url}: healthy"
    except OSError as error:
        return False, f"{service.api_url}: not answering ({error})"


def _read_api(service: Service, since: datetime) -> tuple[list[str], bool, list[DeploymentStatus], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(WORK_POOL)
        described = [f"{worker.name} in pool '{WORK_POOL}': {worker.status.value.lower()}, last heartbeat "
                     f"{_when(worker.last_heartbeat_time)}" for worker in workers]
        online = any(worker.status.value == "ONLINE" for worker in workers)
        deployments = [_deployment_status(client, deployment)
                       for deployment in client.read_deployments() if deployment.work_pool_name == WORK_POOL]
        notifications = notification_problems(client, service.root, since)
    return described or [f"no worker has polled pool '{WORK_POOL}'"], online, deployments, notifications


def _deployment_status(client, deployment) -> DeploymentStatus:
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterStartTime, FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.client.schemas.objects import StateType

    def first_run(state_types: list[str], sort: FlowRunSort, started: bool = False):
        # A run cancelled before it started has no start time (and would sort by its expected one): not "last".
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                                              any_=[StateType(name) for name in state_types])),
                                          start_time=FlowRunFilterStartTime(is_null_=False) if started else None),
            sort=sort, limit=1)
        return runs[0] if runs else None

    schedules = [f"{_describe(entry.schedule)}{'' if entry.active else ' (paused)'}" for entry in deployment.schedules]
    active = not deployment.paused and any(entry.active for entry in deployment.schedules)
    upcoming = first_run(["SCHEDULED"], FlowRunSort.EXPECTED_START_TIME_ASC)
    last = first_run(FINISHED_OR_RUNNING, FlowRunSort.START_TIME_DESC, started=True)
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
    lines = [f"server:  {status.server}", "worker:  " + ("\n         ".join(status.workers) or "unknown"),
             "deployments:"]
    for deployment in status.deployments:
        lines += [f"  {deployment.name}", f"    schedule:  {', '.join(deployment.schedules)}",
                  f"    next run:  {deployment.next_run}", f"    last run:  {deployment.last_run}"]
    if not status.deployments:
        lines.append(f"  none read from pool '{WORK_POOL}' (make serve deploys them)")
    lines.append(f"service errors in the last {ERROR_WINDOW.total_seconds() / 3600:g} h ({status.log_file}): "
                 + (f"{len(status.errors)}" if status.errors else "none"))
    lines += [f"  {error}" for error in status.errors]
    lines.append("runs already ended that the heartbeat automation tried to crash (Prefect refused; harmless, "
                 f"docs/RELIABILITY.md): {status.refused_crashes or 'none'}")
    lines.append("notifications sent twice or not delivered: "
                 + (f"{len(status.notifications)}" if status.notifications else "none"))
    lines += [f"  {problem}" for problem in status.notifications]
    lines.append("status: OK" if status.healthy else "status: NOT OK: " + "; ".join(status.problems))
    return "\n".join(lines)
