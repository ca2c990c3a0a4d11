"""`make deployment-run DATASET=<d>`: run a dataset's deployment on the served Prefect and watch it.

Prints one line per state the run enters (Scheduled, Pending, Running, Completed...) and, at its end, the run's
result: the line the flow logged last with the `result:` prefix (trained and promoted or not, or skipped and why),
or a failed run's state message. Exit code 0 when the run completed, 1 otherwise. (`prefect deployment run --watch`
printed about 110 raw event lines for one run.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from orchestration.deployments import deployment_name, require_deployment
from orchestration.inbox import served_api
from orchestration.serve import check_answers
from tasks.common.errors import PipelineError

RESULT_PREFIX = "result: "
RESULT_WAIT_SECONDS = 15
POLL_SECONDS = 1.0


def watch(api_url: str, dataset: str, say: Callable[[str], None], timeout_seconds: float = 3600) -> bool:
    """Create a run of `dataset`'s deployment, `say` each state it enters, then its result; whether it completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name(dataset))
        run = client.create_flow_run_from_deployment(deployment.id)
        say(f"{deployment_name(dataset)}: flow run {run.name} ({run.id})")
        seen = 0
        deadline = time.monotonic() + timeout_seconds
        while True:
            states = sorted(client.read_flow_run_states(run.id), key=lambda state: state.timestamp)
            for entered in states[seen:]:
                say(f"{entered.timestamp:%H:%M:%S} {entered.name}")
            seen = len(states)
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final() and seen and states[-1].is_final():
                break
            if time.monotonic() > deadline:
                say(f"still {state.name if state else 'without a state'} after {timeout_seconds:.0f} s; the run goes "
                    "on (make status)")
                return False
            time.sleep(POLL_SECONDS)
        # The run sends its log records in batches, the last ones as its process ends: they may reach the server a
        # moment after its final state (the result line once did, in CI), so wait for them a little.
        logs_deadline = time.monotonic() + RESULT_WAIT_SECONDS
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            results = [log.message for log in logs if log.message.startswith(RESULT_PREFIX)]
            if results or not state.is_completed() or time.monotonic() > logs_deadline:
                break
            time.sleep(POLL_SECONDS)
    if state.is_completed():
        if results:
            say(results[-1])
        return True
    say(f"{state.name}: {' '.join((state.message or 'no message').split())}")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.deployment_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist", help="a dataset listed under `datasets` in params.yaml")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to watch (default: %(default)s)")
    arguments = parser.parse_args(argv)
    try:
        api_url = served_api()
        if not api_url:
            raise PipelineError("no served Prefect: start one with `make serve` (or set PREFECT_API_URL)")
        check_answers(api_url)
        require_deployment(api_url, arguments.dataset)
        completed = watch(api_url, arguments.dataset, lambda line: print(line, flush=True), arguments.timeout)
    except PipelineError as error:
        print(f"deployment-run failed for {arguments.dataset}: {error}", file=sys.stderr)
        return 1
    return 0 if completed else 1


if __name__ == "__main__":
    raise SystemExit(main())
