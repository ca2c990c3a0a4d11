"""HTTPS-only downloads with socket timeouts, a size cap, truncation checks and retries for transient faults.

Progress shows as a bar when stderr is a terminal, otherwise as a log line every few seconds.
"""

from __future__ import annotations

import http.client
import logging
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tasks.common.errors import DownloadError, InsecureURLError

logger = logging.getLogger(__name__)
_READ_CHUNK = 1 << 16
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_LOG_EVERY_SECONDS = 5.0
_BAR_EVERY_SECONDS = 0.1
_BAR_WIDTH = 30


@dataclass(frozen=True)
class FetchFailure(Exception):
    """One URL failed; `transient` says whether trying again may help."""

    url: str
    reason: str
    transient: bool

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class _HTTPSOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib hook)
        if not newurl.startswith("https://"):
            raise InsecureURLError(f"{req.full_url}: redirect to {newurl!r} refused (only https:// is followed)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def require_https(url: str) -> None:
    if not url.startswith("https://"):
        raise InsecureURLError(f"{url!r}: only https:// URLs are fetched (plain http is refused: no downgrade)")


class DownloadProgress:
    """Bytes received so far: a bar redrawn in place on a terminal, else a log line every few seconds."""

    def __init__(self, url: str, total: int | None, stream=None) -> None:
        self.url, self.total = url, total
        self.stream = sys.stderr if stream is None else stream
        self.on_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last_shown = time.monotonic()

    def update(self, received: int) -> None:
        now = time.monotonic()
        if now - self.last_shown < (_BAR_EVERY_SECONDS if self.on_terminal else _LOG_EVERY_SECONDS):
            return
        self.last_shown = now
        if self.on_terminal:
            self.stream.write("\r" + self.bar(received))
            self.stream.flush()
        else:
            logger.info("%s: %s", self.url, self.amount(received))

    def close(self, received: int) -> None:
        if self.on_terminal:
            self.stream.write("\r" + self.bar(received) + f" in {time.monotonic() - self.started:.1f} s\n")
            self.stream.flush()

    def bar(self, received: int) -> str:
        name = self.url.rsplit("/", 1)[-1]
        if not self.total:
            return f"{name} {self.amount(received)}"
        filled = int(_BAR_WIDTH * min(received / self.total, 1))
        return f"{name} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {self.amount(received)}"

    def amount(self, received: int) -> str:
        if not self.total:
            return _size(received)
        return f"{_size(received)} of {_size(self.total)} ({100 * received / self.total:.0f} %)"


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.1f} kB"


def fetch_https(url: str, timeout_seconds: float, max_bytes: int, progress_stream=None) -> bytes:
    """Fetch one URL over HTTPS and return its body; raise FetchFailure or InsecureURLError.

    Progress goes to `progress_stream` (default: stderr), as a bar only if that stream is a terminal."""
    require_https(url)
    opener = urllib.request.build_opener(_HTTPSOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-pipeline/1.0"})
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            return _read_body(url, response, max_bytes, progress_stream)
    except urllib.error.HTTPError as error:
        raise FetchFailure(url, f"HTTP {error.code} {error.reason}", error.code in _TRANSIENT_STATUS) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, InsecureURLError):
            raise error.reason from None
        raise FetchFailure(url, f"connection failed: {error.reason}", True) from None
    except (socket.timeout, TimeoutError):
        raise FetchFailure(url, f"no data for {timeout_seconds:g} s (socket timeout)", True) from None
    except (http.client.HTTPException, ConnectionError) as error:
        raise FetchFailure(url, f"connection broken: {error!r}", True) from None


def _read_body(url: str, response, max_bytes: int, progress_stream=None) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and not declared.strip().isdigit():
        raise FetchFailure(url, f"malformed Content-Length header {declared!r}", False)
    if declared is not None and int(declared) > max_bytes:
        raise FetchFailure(url, f"Content-Length {declared} exceeds the {max_bytes}-byte limit", False)
    chunks, received = [], 0
    progress = DownloadProgress(url, int(declared) if declared is not None else None, progress_stream)
    try:
        while chunk := response.read(_READ_CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise FetchFailure(url, f"body exceeds the {max_bytes}-byte limit", False)
            chunks.append(chunk)
            progress.update(received)
    finally:
        progress.close(received)  # ends the bar's line, even when the transfer failed
    if declared is not None and received != int(declared):
        raise FetchFailure(url, f"body truncated: received {received} of {declared} bytes", True)
    return b"".join(chunks)


def fetch_with_retries(url: str, timeout_seconds: float, max_bytes: int, attempts: int,
                       backoff_seconds: float) -> bytes:
    """Try one URL up to `attempts` times, backing off exponentially, but only after transient failures."""
    for attempt in range(1, attempts + 1):
        try:
            return fetch_https(url, timeout_seconds, max_bytes)
        except FetchFailure as failure:
            if not failure.transient or attempt == attempts:
                raise
            delay = backoff_seconds * 2 ** (attempt - 1)
            logger.warning("%s (attempt %d/%d); retrying in %.1f s", failure, attempt, attempts, delay)
            time.sleep(delay)
    raise DownloadError(f"{url}: no attempt was made (attempts={attempts})")
