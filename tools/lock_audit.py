"""Which locked packages came out after the main packages that need them (docs/DEPENDENCIES.md).

    python tools/lock_audit.py [requirements.lock]

For every package in the lock: the first release of its pinned major.minor series, from PyPI's JSON simple
index (PEP 691/700 upload times), and its owners among the main packages, followed through the lock's `# via`
lines. A package whose series first appeared after an owner's release is listed under that owner: the owner was
never released, let alone tested, with it. Needs PyPI; not run by the tests.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

MAIN = ("prefect", "dvc", "great-expectations", "tensorflow", "keras")


def read_lock(path: Path) -> tuple[dict[str, Version], dict[str, set[str]]]:
    """The pins and, for each package, the packages that need it (`# via`)."""
    pins: dict[str, Version] = {}
    needed_by: dict[str, set[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if pin := re.match(r"^([A-Za-z0-9_.\-]+)(?:\[.*\])?==(\S+)", line):
            current = canonicalize_name(pin.group(1))
            pins[current], needed_by[current] = Version(pin.group(2)), set()
        elif current and (via := re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9_.\-]+)\s*$", line)):
            if via.group(1) != "via":
                needed_by[current].add(canonicalize_name(via.group(1)))
    return pins, needed_by


def upload_times(name: str) -> dict[Version, str]:
    """The earliest upload time of each released version of `name` on PyPI."""
    request = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    times: dict[Version, str] = {}
    for file in files:
        try:
            parse = parse_wheel_filename if file["filename"].endswith(".whl") else parse_sdist_filename
            version = parse(file["filename"])[1]
        except (ValueError, InvalidVersion):
            continue
        if file.get("upload-time") and not version.is_prerelease:
            times[version] = min(times.get(version, file["upload-time"]), file["upload-time"])
    return times


def owners(name: str, needed_by: dict[str, set[str]], seen: set[str] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    found = set()
    for parent in needed_by.get(name, ()):
        if parent in MAIN:
            found.add(parent)
        if parent not in seen:
            seen.add(parent)
            found |= owners(parent, needed_by, seen)
    return found


def main(lock_file: str = "requirements.lock") -> None:
    pins, needed_by = read_lock(Path(lock_file))
    with ThreadPoolExecutor(16) as pool:
        times = dict(zip(pins, pool.map(upload_times, pins)))
    released = {main: times[main][pins[main]] for main in MAIN}
    late: dict[str, list[str]] = {main: [] for main in MAIN}
    for name, version in sorted(pins.items()):
        series = [time for other, time in times[name].items() if other.release[:2] == version.release[:2]]
        for owner in owners(name, needed_by) if series and name not in MAIN else ():
            if min(series) > released[owner]:
                late[owner].append(f"{name} {version}")
    for main in MAIN:
        print(f"{main} {pins[main]} (released {released[main][:10]}): {len(late[main])} packages in a newer series: "
              + ", ".join(late[main]))


if __name__ == "__main__":
    main(*sys.argv[1:])
