"""A flow that does nothing: the load test's and `make bench`'s deployment runs measure Prefect alone."""

from prefect import flow


@flow(name="noop")
def noop() -> None:
    return None
