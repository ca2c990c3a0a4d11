"""A deployment run delivers the events it queued, its heartbeats among them, before it reports its final state
(issue 27 item 7): a heartbeat that reached the server's triggers after the run's Completed state opened a new
window of the heartbeat automation, which then tried to crash the finished run. Here: an event queued in this
process is on a real (temporary) Prefect server once `deliver_queued_events` returns, while the process's events
worker keeps running (it is not stopped, as Prefect's `drain_all` would)."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestration.service import deliver_queued_events
from tests.prefect_server import temporary_server

pytestmark = pytest.mark.integration


def test_an_event_queued_in_this_process_is_on_the_server_when_it_returns():
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.events.worker import EventsWorker

    with temporary_server():
        resource = f"test.queued.{uuid.uuid4()}"
        assert emit_event(event="test.queued-event", resource={"prefect.resource.id": resource}) is not None
        worker = EventsWorker.instance()

        assert deliver_queued_events(timeout_seconds=30)
        assert worker._queue.unfinished_tasks == 0 and EventsWorker.instance() is worker  # still running
        deadline, found = time.monotonic() + 30, []
        with get_client(sync_client=True) as client:
            while not found and time.monotonic() < deadline:  # the server stores what it received in batches
                found = client.read_events(EventFilter(
                    event=EventNameFilter(name=["test.queued-event"]),
                    resource=EventResourceFilter(id=[resource])), limit=50).events
                time.sleep(0.5)
        assert [event.resource.id for event in found] == [resource]
        EventsWorker.drain_all(timeout=10)
