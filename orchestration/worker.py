"""Prefect's process worker (`prefect worker start`), saying why a flow-run process it started was killed.

Prefect's worker reports a flow-run process that died of SIGKILL as Crashed with a stock text that names memory
first ("Typically caused by the operating system terminating the process for exceeding memory limits, or by manual
cancellation"). The worker's machine knows which: the kernel counts every process its out-of-memory killer ends, per
cgroup (`oom_kill` in cgroup v2's memory.events, v1's memory.oom_control). This worker compares that count with the
one it last saw and says which it was, in the Crashed state's message that the notification and `make status` show.

    python -m orchestration.worker --pool training [--limit 1 ...]   # the arguments of `prefect worker start`
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SIGKILL_EXIT = -9  # how Python reports a child that SIGKILL ended
REPEAT_SECONDS = 30


def oom_kill_file(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path | None:
    """The file where the kernel counts the processes of this process's cgroup that its OOM killer ended (v2's
    memory.events, or v1's memory.oom_control), or None where it keeps none that can be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2: one hierarchy
            candidates = [cgroup_root / relative / "memory.events"]
        elif "memory" in controllers.split(","):
            candidates = [cgroup_root / "memory" / relative / "memory.oom_control"]
        else:
            continue
        for candidate in candidates:
            if read_oom_kills(candidate) is not None:
                return candidate
    return None


def read_oom_kills(path: Path | None) -> int | None:
    """The `oom_kill` count in `path` (None when it cannot be read or holds none)."""
    if path is None:
        return None
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class KillExplainer:
    """Says, each time a flow-run process died of SIGKILL, whether the OOM killer ended it: whether the kernel's
    count went up since the last time it looked (when the worker started, or the last kill it explained)."""

    def __init__(self, count_file: Path | None):
        self.count_file = count_file
        self.seen = read_oom_kills(count_file)
        self._lock = threading.Lock()
        self._last: tuple[float, tuple[str, str]] | None = None

    def explain(self) -> tuple[str, str]:
        """(what happened, what to do), one sentence each. Prefect 3.8.8 looks one exit up twice (the runner's
        Crashed state, then the worker's log line): within REPEAT_SECONDS and with no new OOM kill, the same answer."""
        with self._lock:
            now = read_oom_kills(self.count_file)
            if self._last and time.monotonic() - self._last[0] < REPEAT_SECONDS and now == self.seen:
                return self._last[1]
            before, self.seen = self.seen, now if now is not None else self.seen
            answer = self._answer(before, now)
            self._last = (time.monotonic(), answer)
            return answer

    def _answer(self, before: int | None, now: int | None) -> tuple[str, str]:
        if now is None or before is None:
            return ("The flow-run process was killed by SIGKILL: by `kill -9` or by the kernel's out-of-memory "
                    "killer; this machine's cgroup keeps no count that tells which.",
                    "Check `dmesg` for 'Out of memory'; then run it again.")
        if now > before:
            return (f"The flow-run process was killed by the kernel's out-of-memory killer (its count in "
                    f"{self.count_file} went from {before} to {now}).",
                    "Give the worker's machine more memory, or lower train.batch_size; then run it again.")
        return (f"The flow-run process was killed by SIGKILL from outside (`kill -9`, or whatever ended its "
                f"machine), not by the out-of-memory killer (its count in {self.count_file} is still {now}).",
                "Nothing it had trained was promoted; run it again.")


def install(explainer: KillExplainer) -> None:
    """Make Prefect's worker take its words for a SIGKILL from `explainer` (Prefect looks the exit code up in
    INFRASTRUCTURE_EXIT_HINTS each time a flow-run process exits other than 0)."""
    from prefect._internal import infrastructure_exit_codes as codes

    class Hints(dict):
        def __getitem__(self, code: int):
            if code == SIGKILL_EXIT:  # Prefect's own entry, in our words (its log level kept)
                explanation, resolution = explainer.explain()
                return dataclasses.replace(super().__getitem__(code), explanation=explanation, resolution=resolution)
            return super().__getitem__(code)

    codes.INFRASTRUCTURE_EXIT_HINTS = Hints(codes.INFRASTRUCTURE_EXIT_HINTS)


def main(arguments: list[str]) -> None:
    """`prefect worker start <arguments>`, its SIGKILL hint ours; it exits as Prefect's CLI does."""
    from prefect.cli import app

    install(KillExplainer(oom_kill_file()))
    sys.argv = ["prefect", "worker", "start", *arguments]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
