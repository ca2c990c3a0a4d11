"""A real HTTPS server on 127.0.0.1 that tests can make misbehave, trusted by the client through SSL_CERT_FILE.

Each test sets `server.routes[path] = (behaviour, argument)`; a path without a route answers 404.
Behaviours:
  ("ok", body)            200 with Content-Length
  ("ok_unsized", body)    200 without Content-Length (the body ends when the connection closes)
  ("status", code)        that status with a short text body
  ("html", body)          200, text/html
  ("bad_length", body)    200 with a Content-Length that is not a number
  ("truncate", body)      Content-Length of the whole body, then only half of it, then the connection closes
  ("hang", seconds)       reads the request, then sends nothing for `seconds` (at most HANG_LIMIT_SECONDS)
  ("redirect", location)  302 to `location`
  ("sequence", [(behaviour, argument), ...])  the n-th request of the path gets the n-th one; the last repeats
`server.requests` lists the paths received, in order, so a test can assert which mirror was tried.

The fixtures are imported into the test modules that use them (`from tests.https_server import https_server`).
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

HANG_LIMIT_SECONDS = 3.0
# Bounds every socket operation of the server, so a stuck client can hold a handler thread only this long.
_SERVER_SOCKET_TIMEOUT = 5.0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: MisbehavingHTTPSServer
    protocol_version = "HTTP/1.0"  # one request per connection: the connection closes after each response

    def do_GET(self) -> None:  # noqa: N802 (http.server hook)
        times_seen = self.server.record(self.path)
        behaviour, argument = self.server.routes.get(self.path, ("status", 404))
        if behaviour == "sequence":  # the n-th request of this path gets the n-th behaviour (the last one repeats)
            behaviour, argument = argument[min(times_seen, len(argument)) - 1]
        if behaviour == "ok":
            self._send(200, argument, "application/octet-stream")
        elif behaviour == "ok_unsized":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(argument)
        elif behaviour == "status":
            self._send(argument, f"status {argument} for {self.path}\n".encode(), "text/plain")
        elif behaviour == "html":
            self._send(200, argument, "text/html; charset=utf-8")
        elif behaviour == "bad_length":
            self.send_response(200)
            self.send_header("Content-Length", "lots")
            self.end_headers()
            self.wfile.write(argument)
        elif behaviour == "truncate":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(argument)))
            self.end_headers()
            self.wfile.write(argument[: len(argument) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif behaviour == "hang":
            # Wakes early when the fixture tears the server down.
            self.server.stopping.wait(min(float(argument), HANG_LIMIT_SECONDS))
            self.close_connection = True
        elif behaviour == "redirect":
            self.send_response(302)
            self.send_header("Location", argument)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            raise ValueError(f"unknown behaviour {behaviour!r} for {self.path}")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server signature)
        pass


class MisbehavingHTTPSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ssl_context = ssl_context
        self.routes: dict[str, tuple[str, object]] = {}
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def record(self, path: str) -> int:
        """Note a request; return how many requests of this path have arrived, this one included."""
        with self._lock:
            self.requests.append(path)
            return self.requests.count(path)

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow client cannot block accept().
        request.settimeout(_SERVER_SOCKET_TIMEOUT)
        try:
            tls_request = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that gave up or distrusted the certificate; it sees the failure itself
        try:
            super().finish_request(tls_request, client_address)
        finally:
            tls_request.close()

    def handle_error(self, request, client_address) -> None:
        pass  # the client gave up early (timeout tests); the test asserts what the client saw


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[MisbehavingHTTPSServer]:
    """A running MisbehavingHTTPSServer whose certificate the client trusts (SSL_CERT_FILE), stopped on teardown."""
    ca_file = Path(tmp_path_factory.mktemp("tls")) / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = MisbehavingHTTPSServer(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
