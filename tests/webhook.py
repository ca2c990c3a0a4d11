"""A webhook receiver on 127.0.0.1 that records what arrives: what failure notifications are sent to in tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver(BaseHTTPRequestHandler):
    received: list = []  # every POST: {"path": ..., "body": the JSON it carried}
    answer = 200  # what it answers (a test sets 500 for a receiver that refuses)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.received.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")})
        self.send_response(self.answer)
        self.end_headers()

    def log_message(self, *arguments):
        pass


@contextmanager
def receiving() -> Iterator[ThreadingHTTPServer]:
    """The receiver on a free loopback port while the block lasts; then stopped, and its thread joined."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def hook_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadingHTTPServer]:
    """The receiver for a test module (imported by the modules that use it)."""
    with receiving() as server:
        yield server
