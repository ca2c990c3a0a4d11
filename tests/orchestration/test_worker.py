"""The worker's words for a flow-run process killed by SIGKILL (issue 27 item 12): Prefect's stock text names memory
first; ours says whether the kernel's out-of-memory killer ended it, from the count the kernel keeps per cgroup.
The count files are written here (a test cannot make the kernel's OOM killer act on demand); the served case, a
real `kill -9` under a real worker, is in tests/reliability/test_crashed_runs.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from orchestration import worker
from orchestration.worker import KillExplainer, install, oom_kill_file, read_oom_kills


def cgroup_v1(tmp_path, count: int):
    (tmp_path / "proc").write_text("4:memory:/box/one\n3:cpuset:/\n0::/\n")
    folder = tmp_path / "cg/memory/box/one"
    folder.mkdir(parents=True)
    (folder / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {count}\n")
    return folder / "memory.oom_control"


def test_the_count_file_is_found_on_cgroup_v1_and_v2_and_none_where_there_is_none(tmp_path):
    v1 = cgroup_v1(tmp_path, 3)
    assert oom_kill_file(tmp_path / "cg", tmp_path / "proc") == v1 and read_oom_kills(v1) == 3

    v2_root = tmp_path / "v2"
    (v2_root / "user.slice/run").mkdir(parents=True)
    (v2_root / "user.slice/run/memory.events").write_text("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n")
    (tmp_path / "proc2").write_text("0::/user.slice/run\n")
    assert oom_kill_file(v2_root, tmp_path / "proc2") == v2_root / "user.slice/run/memory.events"

    (tmp_path / "proc3").write_text("0::/nowhere\n")
    assert oom_kill_file(v2_root, tmp_path / "proc3") is None
    assert oom_kill_file(v2_root, tmp_path / "missing") is None


def test_a_kill_is_told_from_an_out_of_memory_kill_by_the_kernels_count(tmp_path, monkeypatch):
    count_file = cgroup_v1(tmp_path, 0)
    explainer = KillExplainer(count_file)

    outside, _ = explainer.explain()
    monkeypatch.setattr(worker, "REPEAT_SECONDS", 30)
    count_file.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")  # the OOM killer ended a process
    memory, what_to_do = explainer.explain()
    repeated = explainer.explain()  # Prefect looks the same exit up a second time, for its log line
    monkeypatch.setattr(worker, "REPEAT_SECONDS", 0)
    again, _ = explainer.explain()  # a later kill, with no new OOM kill: from outside again

    assert outside.startswith("The flow-run process was killed by SIGKILL from outside (`kill -9`")
    assert "not by the out-of-memory killer" in outside and "is still 0" in outside
    assert memory == f"The flow-run process was killed by the kernel's out-of-memory killer (its count in {count_file} went from 0 to 1)."
    assert "lower train.batch_size" in what_to_do and repeated == (memory, what_to_do)
    assert "not by the out-of-memory killer" in again and "is still 1" in again
    assert "keeps no count that tells which" in KillExplainer(None).explain()[0]


def test_prefects_worker_takes_its_words_for_a_sigkill_and_its_own_for_other_codes(tmp_path, monkeypatch):
    from prefect._internal import infrastructure_exit_codes as codes

    monkeypatch.setattr(codes, "INFRASTRUCTURE_EXIT_HINTS", codes.INFRASTRUCTURE_EXIT_HINTS)
    stock = codes.get_infrastructure_exit_info(-9).explanation
    install(KillExplainer(cgroup_v1(tmp_path, 2)))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(child.pid, signal.SIGKILL)

    info = codes.get_infrastructure_exit_info(child.wait(timeout=30))  # what the worker looks up: -9

    assert "memory limits" in stock and "memory limits" not in info.explanation
    assert info.log_level == codes.INFRASTRUCTURE_EXIT_HINTS.get(-9).log_level  # Prefect's own level (INFO)
    assert "not by the out-of-memory killer" in info.explanation
    assert codes.get_infrastructure_exit_info(-15).explanation.startswith("Process exited due to a SIGTERM")
