"""tasks.lib.http against a real HTTPS server on 127.0.0.1 (tests/https_server.py) that misbehaves on request."""

import io
import logging
import re
import time

import pytest

from tasks.common.errors import InsecureURLError
from tasks.lib.http import FetchFailure, fetch_https, fetch_with_retries
from tests.https_server import https_server, tls_ca  # noqa: F401 (pytest fixtures)

BODY = bytes(range(256)) * 40  # 10,240 bytes


def test_fetch_https_returns_the_body(https_server):
    https_server.routes["/file.gz"] = ("ok", BODY)

    assert fetch_https(https_server.url("/file.gz"), timeout_seconds=2, max_bytes=1 << 20) == BODY
    assert https_server.requests == ["/file.gz"]


def test_body_without_content_length_is_read_to_the_end(https_server):
    https_server.routes["/file.gz"] = ("ok_unsized", BODY)

    assert fetch_https(https_server.url("/file.gz"), timeout_seconds=2, max_bytes=1 << 20) == BODY


def test_untrusted_certificate_is_refused(https_server, monkeypatch, tmp_path):
    # Without our test CA the server's certificate cannot be verified: the fetch must fail, not fall back.
    https_server.routes["/file.gz"] = ("ok", BODY)
    empty_bundle = tmp_path / "empty.pem"
    empty_bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_bundle))
    url = https_server.url("/file.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_https(url, timeout_seconds=2, max_bytes=1 << 20)
    assert str(raised.value).startswith(f"{url}: connection failed:")
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)


def test_404_is_a_permanent_failure_naming_the_url(https_server):
    url = https_server.url("/missing.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_https(url, timeout_seconds=2, max_bytes=1 << 20)
    assert raised.value.transient is False
    assert raised.value.url == url
    assert str(raised.value) == f"{url}: HTTP 404 Not Found"


def test_404_is_not_retried(https_server):
    url = https_server.url("/missing.gz")

    with pytest.raises(FetchFailure, match=re.escape(f"{url}: HTTP 404")):
        fetch_with_retries(url, timeout_seconds=2, max_bytes=1 << 20, attempts=3, backoff_seconds=0)
    assert https_server.requests == ["/missing.gz"]


def test_503_is_transient_and_retried_until_attempts_run_out(https_server):
    https_server.routes["/busy.gz"] = ("status", 503)
    url = https_server.url("/busy.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_with_retries(url, timeout_seconds=2, max_bytes=1 << 20, attempts=3, backoff_seconds=0)
    assert raised.value.transient is True
    assert str(raised.value) == f"{url}: HTTP 503 Service Unavailable"
    assert https_server.requests == ["/busy.gz"] * 3


def test_retry_succeeds_once_the_server_recovers(https_server):
    https_server.routes["/flaky.gz"] = ("sequence", [("status", 503), ("ok", BODY)])

    body = fetch_with_retries(https_server.url("/flaky.gz"), timeout_seconds=2, max_bytes=1 << 20, attempts=3,
                              backoff_seconds=0)
    assert body == BODY
    assert https_server.requests == ["/flaky.gz", "/flaky.gz"]


def test_truncated_body_is_a_transient_failure_naming_the_url(https_server):
    https_server.routes["/cut.gz"] = ("truncate", BODY)
    url = https_server.url("/cut.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_https(url, timeout_seconds=2, max_bytes=1 << 20)
    assert raised.value.transient is True
    message = str(raised.value)
    assert message.startswith(f"{url}: ")
    assert (f"body truncated: received {len(BODY) // 2} of {len(BODY)} bytes" in message
            or "connection broken" in message), message


def test_malformed_content_length_is_a_fetch_failure(https_server):
    https_server.routes["/odd.gz"] = ("bad_length", BODY)
    url = https_server.url("/odd.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_https(url, timeout_seconds=2, max_bytes=1 << 20)
    assert str(raised.value).startswith(f"{url}: ")
    assert "Content-Length" in str(raised.value)


def test_server_that_never_answers_hits_the_socket_timeout(https_server):
    https_server.routes["/slow.gz"] = ("hang", 3)
    url = https_server.url("/slow.gz")

    started = time.monotonic()
    with pytest.raises(FetchFailure) as raised:
        fetch_https(url, timeout_seconds=0.5, max_bytes=1 << 20)
    elapsed = time.monotonic() - started
    assert str(raised.value) == f"{url}: no data for 0.5 s (socket timeout)"
    assert raised.value.transient is True
    assert elapsed < 2.5, f"the 0.5 s timeout took {elapsed:.1f} s to fire"
    assert https_server.requests == ["/slow.gz"]


def test_declared_length_over_max_bytes_is_refused_without_retry(https_server):
    https_server.routes["/big.gz"] = ("ok", BODY)
    url = https_server.url("/big.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_with_retries(url, timeout_seconds=2, max_bytes=1000, attempts=3, backoff_seconds=0)
    assert raised.value.transient is False
    assert str(raised.value) == f"{url}: Content-Length {len(BODY)} exceeds the 1000-byte limit"
    assert https_server.requests == ["/big.gz"]


def test_undeclared_body_over_max_bytes_is_refused(https_server):
    https_server.routes["/big.gz"] = ("ok_unsized", BODY)
    url = https_server.url("/big.gz")

    with pytest.raises(FetchFailure) as raised:
        fetch_https(url, timeout_seconds=2, max_bytes=1000)
    assert raised.value.transient is False
    assert str(raised.value) == f"{url}: body exceeds the 1000-byte limit"


def test_plain_http_url_is_refused_before_any_request(https_server):
    https_server.routes["/file.gz"] = ("ok", BODY)
    url = https_server.url("/file.gz").replace("https://", "http://")

    with pytest.raises(InsecureURLError) as raised:
        fetch_with_retries(url, timeout_seconds=2, max_bytes=1 << 20, attempts=3, backoff_seconds=0)
    assert str(raised.value) == f"{url!r}: only https:// URLs are fetched (plain http is refused: no downgrade)"
    assert https_server.requests == []


def test_redirect_to_plain_http_is_refused(https_server):
    target = https_server.url("/file.gz").replace("https://", "http://")
    https_server.routes["/moved.gz"] = ("redirect", target)
    https_server.routes["/file.gz"] = ("ok", BODY)
    url = https_server.url("/moved.gz")

    with pytest.raises(InsecureURLError) as raised:
        fetch_with_retries(url, timeout_seconds=2, max_bytes=1 << 20, attempts=3, backoff_seconds=0)
    assert str(raised.value) == f"{url}: redirect to {target!r} refused (only https:// is followed)"
    assert https_server.requests == ["/moved.gz"]


def test_redirect_to_https_is_followed(https_server):
    https_server.routes["/moved.gz"] = ("redirect", https_server.url("/file.gz"))
    https_server.routes["/file.gz"] = ("ok", BODY)

    assert fetch_https(https_server.url("/moved.gz"), timeout_seconds=2, max_bytes=1 << 20) == BODY
    assert https_server.requests == ["/moved.gz", "/file.gz"]


class Terminal(io.StringIO):
    """Stands in for stderr on a terminal (pytest captures the real one, which is then not a TTY)."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar(https_server):
    https_server.routes["/file.gz"] = ("ok", BODY)
    terminal = Terminal()

    fetch_https(https_server.url("/file.gz"), timeout_seconds=2, max_bytes=1 << 20, progress_stream=terminal)

    last_line = terminal.getvalue().split("\r")[-1]
    assert re.fullmatch(r"file\.gz \[#{30}\] 10\.2 kB of 10\.2 kB \(100 %\) in [\d.]+ s\n", last_line)


def test_without_a_terminal_progress_goes_to_the_log(https_server, monkeypatch, caplog):
    https_server.routes["/file.gz"] = ("ok_unsized", BODY)
    monkeypatch.setattr("tasks.lib.http._LOG_EVERY_SECONDS", 0.0)
    not_a_terminal = io.StringIO()
    url = https_server.url("/file.gz")

    with caplog.at_level(logging.INFO, logger="tasks.lib.http"):
        fetch_https(url, timeout_seconds=2, max_bytes=1 << 20, progress_stream=not_a_terminal)

    assert not_a_terminal.getvalue() == ""
    assert f"{url}: 10.2 kB" in caplog.messages
