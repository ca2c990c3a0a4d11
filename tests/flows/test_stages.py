"""The download task retries transient failures only (a real Prefect Failed state carries the exception)."""

import pytest
from prefect.states import Failed

from flows.stages import _is_transient
from tasks.common.errors import ChecksumError, ConfigError, DownloadError, InsecureURLError


@pytest.mark.parametrize("error", [ChecksumError("bad sum"), ConfigError("bad key"), InsecureURLError("http://x")])
def test_deterministic_failures_are_not_retried(error):
    assert _is_transient(None, None, Failed(data=error)) is False


@pytest.mark.parametrize("error", [DownloadError("all mirrors down"), TimeoutError("slow")])
def test_other_failures_are_retried(error):
    assert _is_transient(None, None, Failed(data=error)) is True
