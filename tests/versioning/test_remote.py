"""versioning/remote.py's rebase on real git repositories: two runs of different datasets committed on the same
commit, one pushed first; the other replays its commit on top. (The whole clone-mode run, with DVC and Prefect, is
tests/integration/test_remote_workers.py.)"""

import subprocess

import pytest
import yaml

from versioning.remote import rebase
from tasks.common.errors import PipelineError


def git(root, *arguments):
    return subprocess.run(["git", *arguments], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def two_clones(tmp_path):
    """A bare remote holding dvc.lock (one flow-style line per stage, so that two runs' edits touch) and a DVC
    .gitignore; two clones of it."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train@digits: {md5: d0}\n  train@shoes: {md5: s0}\n")
    (seed / "data").mkdir()
    (seed / "data" / ".gitignore").write_text("/old\n")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(tmp_path / "remote.git"))
    clones = []
    for name in ("first", "second"):
        git(tmp_path, "clone", "-q", str(tmp_path / "remote.git"), str(tmp_path / name))
        git(tmp_path / name, "config", "user.name", name)
        git(tmp_path / name, "config", "user.email", f"{name}@example.com")
        clones.append(tmp_path / name)
    return clones


def commit_run(root, dataset, md5, ignored):
    lock = root / "dvc.lock"
    lock.write_text(lock.read_text().replace(f"train@{dataset}: {{md5: {dataset[0]}0}}",
                                             f"train@{dataset}: {{md5: {md5}}}"))
    with open(root / "data" / ".gitignore", "a") as ignore:
        ignore.write(f"/{ignored}\n")
    git(root, "commit", "-qam", f"{dataset}: promoted")


def test_a_dvc_lock_conflict_keeps_the_remotes_stages_and_this_runs_own(two_clones):
    first, second = two_clones
    commit_run(first, "digits", "d1", "digits")
    git(first, "push", "-q", "origin", "main")
    commit_run(second, "shoes", "s1", "shoes")
    git(second, "fetch", "-q", "origin")
    conflict = subprocess.run(["git", "merge-tree", "--write-tree", "HEAD", "origin/main"], cwd=second,
                              capture_output=True, text=True)
    assert conflict.returncode == 1 and "dvc.lock" in conflict.stdout  # the case under test: a real conflict

    rebase(second, "shoes", "origin/main")

    stages = yaml.safe_load((second / "dvc.lock").read_text())["stages"]
    assert stages == {"train@digits": {"md5": "d1"}, "train@shoes": {"md5": "s1"}}
    assert (second / "data" / ".gitignore").read_text() == "/old\n/digits\n/shoes\n"
    assert git(second, "rev-parse", "HEAD~1") == git(second, "rev-parse", "origin/main")  # on top, no merge
    assert git(second, "log", "-1", "--format=%s").strip() == "shoes: promoted"
    assert not git(second, "status", "--porcelain")


def test_a_conflict_in_another_file_stops_with_one_line_and_undoes_the_rebase(two_clones):
    first, second = two_clones
    for root, text in ((first, "first\n"), (second, "second\n")):
        (root / "notes.txt").write_text(text)
        git(root, "add", "notes.txt")
        git(root, "commit", "-qm", "notes")
    git(first, "push", "-q", "origin", "main")
    git(second, "fetch", "-q", "origin")
    before = git(second, "rev-parse", "HEAD")

    with pytest.raises(PipelineError, match=r"rebasing shoes's version onto origin/main failed: conflicts in "
                                            r"\['notes.txt'\] .*nothing was pushed to git") as raised:
        rebase(second, "shoes", "origin/main")

    assert "\n" not in str(raised.value)
    assert git(second, "rev-parse", "HEAD") == before and not git(second, "status", "--porcelain")
