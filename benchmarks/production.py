"""`make bench` target 15, production beyond one machine (issue 26), on this one machine:

- sustained no-op deployment runs per minute with 2 workers (`--limit 4` each), the server on PostgreSQL (a server
  started here from Debian's binaries, tests/postgres.py) and on SQLite, in alternating batches (tests/load.py);
- the pickup delay, a run's creation to its Running state, of sequential runs: the training deployment in local mode
  is measured in benchmarks/served.py; here the no-op deployment in local mode and in clone mode (each run clones a
  bare git remote first, Prefect's git_clone step), one worker polling as `make serve`'s does;
- the seconds a remote worker spends on clone plus `dvc pull` for Fashion-MNIST: `git clone --depth 1` of the
  branch (what Prefect's git_clone step runs) and `versioning.remote.prepare` (fetch the history and tags, `dvc
  pull` the dataset's outputs) in a fresh process, from a local-folder DVC remote (an S3 remote adds its network).

`python -m benchmarks.production` prints these figures alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.measure import run_timed
from benchmarks.pickup import pickup_seconds, pickup_summary

FASHION = "fashion-mnist"
LOAD_RUNS = int(os.environ.get("BENCH_LOAD_RUNS", "40"))
LOAD_BATCHES = 2
SECTION = "## Production beyond one machine (target 15, `make bench-production`)"


@contextmanager
def _database(database: str, postgres) -> Iterator[None]:
    """Prefect's database setting for the servers started inside: a new PostgreSQL database, or SQLite."""
    from orchestration.server_log import DATABASE_URL_VARIABLE

    saved = os.environ.pop(DATABASE_URL_VARIABLE, None)
    if database == "postgresql":
        os.environ[DATABASE_URL_VARIABLE] = postgres.new_database("bench")
    try:
        yield
    finally:
        os.environ.pop(DATABASE_URL_VARIABLE, None)
        if saved is not None:
            os.environ[DATABASE_URL_VARIABLE] = saved


@contextmanager
def _server(scratch: Path, name: str) -> Iterator[tuple[object, list[str]]]:
    """A Prefect server of its own; on the way out, stopped, and the errors its log holds (beyond the routine
    ones, orchestration/server_log.py) added to the yielded list: a figure, not a failure."""
    from orchestration.serve import Service, start_server, stop
    from orchestration.server_log import database_kind, read_service_errors
    from tests.prefect_server import free_port

    service = Service(home=scratch / name, root=scratch, port=free_port())
    errors: list[str] = []
    start_server(service)
    try:
        yield service, errors
    finally:
        stop(service)
        errors += [error.summary() for error in read_service_errors(
            service.log_file("server"), database=database_kind(service.environment()))]


def load_figures(scratch: Path, log) -> dict:
    """Runs per minute with 2 workers, LOAD_BATCHES batches of LOAD_RUNS runs per database, alternated."""
    from tests.load import deploy_noop, run_at_once, workers
    from tests.postgres import start_postgres

    postgres = start_postgres()
    figures: dict[str, list[dict]] = {"postgresql": [], "sqlite": []}
    try:
        for batch in range(1, LOAD_BATCHES + 1):
            for database in figures:
                name = f"load-{database}-{batch}"
                with _database(database, postgres), _server(scratch, name) as (service, errors):
                    deploy_noop(service)
                    with workers(service, scratch / f"{name}-workers", count=2, limit=4):
                        load = run_at_once(service, LOAD_RUNS)
                figures[database].append({
                    "runs": LOAD_RUNS, "seconds": load.seconds, "per_minute": load.runs_per_minute,
                    "sustained_per_minute": load.sustained_per_minute(skip=5),
                    "completed": load.states.count("Completed"),
                    "not_once_running": sum(count != 1 for count in load.running_counts),
                    "server_errors": len(errors), "first_error": errors[0] if errors else None})
                sustained = figures[database][-1]["sustained_per_minute"]
                log(f"15: {LOAD_RUNS} no-op runs, 2 workers, {database}: {load.seconds:.1f} s "
                    f"({load.runs_per_minute:.1f} runs/min; sustained {sustained:.1f}); "
                    f"{load.states.count('Completed')} Completed; {len(errors)} server error(s)"
                    + (f", first: {errors[0]}" if errors else ""))
    finally:
        postgres.stop()
    return figures


def pickup_figures(scratch: Path, workspace: Path, log) -> dict:
    """The no-op deployment's pickup delay in local mode and in clone mode (a bare clone of `workspace`)."""
    from tests.load import DEPLOYMENT, deploy_noop, workers

    remote = scratch / "pickup-remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(workspace), str(remote)], check=True)
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=workspace, check=True,
                            capture_output=True, text=True).stdout.strip()
    figures = {}
    for mode, git_remote in (("local", None), ("clone", f"file://{remote}")):
        worker_root = scratch / f"pickup-{mode}"
        worker_root.mkdir()
        with _server(scratch, f"pickup-{mode}-server") as (service, _):
            deploy_noop(service, git_remote, branch)
            with workers(service, worker_root, count=1, limit=1, cwd=worker_root):
                figures[mode] = pickup_summary(pickup_seconds(service, DEPLOYMENT))
        log(f"15: pickup, no-op deployment, {mode} mode: median {figures[mode]['median']:.2f} s, "
            f"p95 {figures[mode]['p95']:.2f} s (median to Pending {figures[mode]['median_to_pending']:.2f} s)")
    return figures


def clone_and_pull(scratch: Path, workspace: Path, log, repeats: int = 3) -> dict:
    """A fresh clone of `workspace` (Fashion-MNIST built and committed) and `dvc pull` of Fashion-MNIST's outputs
    from a local-folder DVC remote, `repeats` times."""
    from versioning.dvc_state import stage_targets

    dvc_remote = scratch / "dvc-remote"
    for command in (["dvc", "remote", "add", "--force", "--default", "bench", str(dvc_remote)],
                    ["dvc", "push", "--quiet", *stage_targets(FASHION)],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "bench: Fashion-MNIST and its DVC remote"]):
        run_timed(command, workspace)
    remote = scratch / "clone-remote.git"
    run_timed(["git", "clone", "-q", "--bare", str(workspace), str(remote)], scratch)
    branch = run_timed(["git", "rev-parse", "--abbrev-ref", "HEAD"], workspace).stdout.strip()
    prepare = ("import sys; from pathlib import Path; from versioning.remote import prepare; "
               f"prepare(Path(sys.argv[1]), {FASHION!r})")
    rows = []
    for attempt in range(repeats):
        fresh = scratch / f"worker-clone-{attempt}"
        clone = run_timed(["git", "clone", "-q", "--depth", "1", "--branch", branch, f"file://{remote}",
                           str(fresh)], scratch)
        pull = run_timed([sys.executable, "-c", prepare, str(fresh)], fresh)
        pulled = sum(path.stat().st_size for path in (fresh / "data").rglob("*") if path.is_file())
        rows.append({"clone_seconds": clone.seconds, "prepare_seconds": pull.seconds,
                     "seconds": clone.seconds + pull.seconds, "data_bytes": pulled})
        log(f"15: clone {clone.seconds:.1f} s + fetch and dvc pull {pull.seconds:.1f} s "
            f"({pulled / 2**20:.0f} MiB under data/)")
    return {"rows": rows}


def production_figures(scratch: Path, workspace: Path, log) -> dict:
    return {"load": load_figures(scratch, log), "pickup": pickup_figures(scratch, workspace, log),
            "clone": clone_and_pull(scratch, workspace, log)}


def main() -> int:
    """Target 15 alone: prints its verdict lines and puts them in RESULTS.md as a section of their own (replacing
    an earlier one), with the machine and the date; the other targets' figures stay as `make bench` wrote them."""
    from datetime import datetime, timezone

    from benchmarks.measure import PROJECT_ROOT, copy_workspace, machine_details
    from benchmarks.report import production_verdict_lines
    from benchmarks.served import local_pickup

    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-production-") as scratch:
        local = local_pickup(Path(scratch), log)
        workspace = copy_workspace(Path(scratch) / "workspace", [FASHION])
        log("Fashion-MNIST: first dvc repro")
        run_timed(["dvc", "repro"], workspace)
        figures = production_figures(Path(scratch), workspace, log)
    machine = machine_details()
    lines = production_verdict_lines(local, figures)
    section = "\n".join([
        SECTION, "",
        f"Run {datetime.now(timezone.utc).isoformat(timespec='seconds')} at commit {machine['commit']} on "
        f"{machine['cpu']} ({machine['cpu_flags']}), {machine['cores']} cores, {machine['memory_gib']} GiB, Python "
        f"{machine['python']}: `make bench-production`, "
        f"{time.perf_counter() - started:.0f} s.", "", *[f"- {line}" for line in lines], ""])
    results = PROJECT_ROOT / "benchmarks" / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    before, _, after = text.partition(SECTION)
    rest = after[after.find("\n## "):] if "\n## " in after else ""  # a later section stays
    results.write_text(before.rstrip("\n") + "\n\n" + section + rest)
    print(json.dumps({"machine": machine, "local_pickup": local, **figures}, indent=1, default=str))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
