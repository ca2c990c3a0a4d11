"""Running a flow's tasks on Dask (prefect-dask), with every worker reporting to the flow's own Prefect API."""

from __future__ import annotations

import contextlib


def dask_runner(workers: int, scheduler_address: str | None):
    """An existing Dask cluster when given its address, else a local one of `workers` single-threaded processes."""
    from prefect_dask import DaskTaskRunner

    if scheduler_address:
        return DaskTaskRunner(address=scheduler_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": None})


@contextlib.contextmanager
def shared_api():
    """Point Dask workers at this flow's Prefect API. Without a configured server, Prefect runs a temporary
    one for this process, and each worker process would otherwise start (and record trials in) its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # this process's temporary server (one per process), started if needed
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield
