"""Helpers for `make bench`: a scratch copy of the repository, timed subprocesses, medians and verdicts."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Timed:
    seconds: float
    stdout: str
    stderr: str

    def json_line(self) -> dict:
        """The last stdout line that is a JSON object."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"no JSON line in output:\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}")

    def peak_rss_bytes(self) -> int:
        """From GNU time's `peak_rss_kib=N` or benchmarks/peak_rss.py's `peak_rss_bytes=N` line."""
        in_kib = re.findall(r"peak_rss_kib=(\d+)", self.stderr)
        if in_kib:
            return int(in_kib[-1]) * 1024
        in_bytes = re.findall(r"peak_rss_bytes=(\d+)", self.stderr)
        if not in_bytes:
            raise RuntimeError(f"no peak RSS line in stderr:\n{self.stderr[-2000:]}")
        return int(in_bytes[-1])


def run_timed(command: list[str], cwd: Path, extra_env: dict[str, str] | None = None, timeout: int = 900) -> Timed:
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                   "PYTHONPATH": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{command} exited {completed.returncode}:\n{completed.stdout[-3000:]}\n"
                           f"{completed.stderr[-3000:]}")
    return Timed(seconds, completed.stdout, completed.stderr)


def copy_workspace(destination: Path, datasets: list[str]) -> Path:
    """A git + DVC copy of the project building only `datasets`, with the raw files already in place so the
    download stage only verifies them."""
    from tests.integration.repo import copy_repository

    def build_only(document: dict) -> None:
        document["datasets"] = datasets

    for dataset in datasets:
        raw = PROJECT_ROOT / "data" / "raw" / dataset
        if raw.is_dir():
            shutil.copytree(raw, destination / "data" / "raw" / dataset, dirs_exist_ok=True)
    return copy_repository(destination, build_only)


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(name: str, value: float, target: float, lower_is_better: bool = True, unit: str = "") -> str:
    met = value <= target if lower_is_better else value >= target
    relation = "<=" if lower_is_better else ">="
    shown, wanted = (f"{value:,.0f}", f"{target:,.0f}") if value >= 1000 else (f"{value:.3g}", f"{target:g}")
    if met:
        return f"{name}: target met ({shown}{unit} {relation} {wanted}{unit})"
    return f"{name}: target missed: {shown}{unit} vs {relation} {wanted}{unit}"


def machine_details() -> dict:
    """The CPU (model, and the vector extensions TensorFlow's kernels differ by), memory, Python and the commit:
    figures from two machines are never compared, so every figure says which one it came from."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), []))
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
            "cpu_flags": ", ".join(f"{name} {'yes' if flag in flags else 'no'}"
                                   for name, flag in (("AVX-512", "avx512f"), ("AVX2", "avx2"), ("FMA", "fma"))),
            "commit": commit, "python": platform.python_version(), "platform": platform.platform()}
