"""Target 15's pickup delay, shared by benchmarks/served.py (the training deployment) and benchmarks/production.py
(the no-op deployment): a run's creation to its Pending and Running states, as the server recorded them."""

from __future__ import annotations

import statistics
import time

PICKUP_RUNS = 20


def pickup_seconds(service, deployment_name: str, runs: int = PICKUP_RUNS) -> list[dict[str, float]]:
    """`runs` runs of a deployment, one after the other (each created once the previous one ended): for each, the
    seconds from its creation to its Pending state (a worker took it: the polling) and to its Running state (the
    flow's process started and loaded the flow), as the server recorded them."""
    from tests.prefect_server import api_client

    rows = []
    with api_client(service) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        for _ in range(runs):
            run_id = client.create_flow_run_from_deployment(deployment.id).id
            deadline = time.monotonic() + 300
            while not (run := client.read_flow_run(run_id)).state.is_final():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{deployment_name}: run {run.name} not final after 300 s")
                time.sleep(0.2)
            if run.state.name != "Completed":
                raise RuntimeError(f"{deployment_name}: run {run.name} ended {run.state.name}: {run.state.message}")
            reached = {state.type.value: state.timestamp for state in client.read_flow_run_states(run_id)}
            rows.append({name: (reached[state] - run.created).total_seconds()
                         for name, state in (("pending", "PENDING"), ("running", "RUNNING"))})
    return rows


def pickup_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    running = [row["running"] for row in rows]
    return {"runs": len(rows), "median": statistics.median(running), "p95": percentile(running, 0.95),
            "median_to_pending": statistics.median(row["pending"] for row in rows)}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
