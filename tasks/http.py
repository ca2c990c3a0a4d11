"""HTTPS-only downloads with socket timeouts, a size cap, truncation checks and retries for transient faults."""

from __future__ import annotations

import http.client
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tasks.errors import DownloadError, InsecureURLError

logger = logging.getLogger(__name__)
_READ_CHUNK = 1 << 16
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


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


def fetch_https(url: str, timeout_seconds: float, max_bytes: int) -> bytes:
    """Fetch one URL over HTTPS and return its body; raise FetchFailure or InsecureURLError."""
    require_https(url)
    opener = urllib.request.build_opener(_HTTPSOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-pipeline/1.0"})
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            return _read_body(url, response, max_bytes)
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


def _read_body(url: str, response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and not declared.strip().isdigit():
        raise FetchFailure(url, f"malformed Content-Length header {declared!r}", False)
    if declared is not None and int(declared) > max_bytes:
        raise FetchFailure(url, f"Content-Length {declared} exceeds the {max_bytes}-byte limit", False)
    chunks, received = [], 0
    while chunk := response.read(_READ_CHUNK):
        received += len(chunk)
        if received > max_bytes:
            raise FetchFailure(url, f"body exceeds the {max_bytes}-byte limit", False)
        chunks.append(chunk)
    if declared is not None and received != int(declared):
        raise FetchFailure(url, f"body truncated: received {received} of {declared} bytes", True)
    return b"".join(chunks)


def fetch_with_retries(url: str, timeout_seconds: float, max_bytes: int, attempts: int, backoff_seconds: float) -> bytes:
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
