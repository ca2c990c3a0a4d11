"""Headless Chromium for the tests that render a page, offline: DNS resolves nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess


def run_chromium(arguments: list[str], profile, timeout_seconds: float = 90) -> str:
    """Headless Chromium in its own session, bounded in time; everything it started is killed at the end.

    DNS resolves nothing, so a page that needed the network would show broken images."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (make chromium, or apt-get install chromium)"
    process = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--hide-scrollbars", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"chromium did not finish within {timeout_seconds} s: {arguments}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # helper processes left in its session, if any
    assert process.returncode == 0, f"chromium exited {process.returncode}:\n{stderr[-3000:]}"
    return stdout
