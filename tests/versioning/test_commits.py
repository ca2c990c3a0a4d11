"""versioning/commits.py on a real git repository: what a run commits, and what it leaves alone."""

import subprocess

import pytest

from versioning.commits import commit_version, data_version, versioned_files
from tasks.common.paths import DatasetPaths


def git(root, *arguments):
    return subprocess.run(["git", *arguments], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.name", "someone")
    git(tmp_path, "config", "user.email", "someone@example.com")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "start")
    return DatasetPaths(tmp_path, "shoes")


def test_a_run_commits_its_datasets_files_and_nothing_the_user_staged(checkout):
    paths = checkout
    (paths.root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    paths.reports_dir.mkdir(parents=True)
    (paths.reports_dir / "metrics.json").write_text("{}\n")
    (paths.root / "notes.txt").write_text("mine, edited\n")
    git(paths.root, "add", "notes.txt")  # the user's own staged change

    commit = commit_version(paths, "shoes: started by hand: data base; promoted")

    assert git(paths.root, "log", "-1", "--format=%H %s").strip() == f"{commit} shoes: started by hand: data base; promoted"
    assert sorted(git(paths.root, "show", "--name-only", "--format=", "HEAD").split()) == ["dvc.lock",
                                                                                          "reports/shoes/metrics.json"]
    assert git(paths.root, "diff", "--cached", "--name-only").split() == ["notes.txt"]  # still staged, not committed


def test_a_long_decision_is_a_subject_line_and_a_body_that_make_history_reads_back_whole(checkout):
    from versioning.history import read_history

    paths = checkout
    paths.reports_dir.mkdir(parents=True)
    (paths.reports_dir / "metrics.json").write_text('{"test_accuracy": 0.8}\n')
    gates = [f"recall drop -0.{n:03d} for 'class {n}' (p = 0.0{n}, Holm-adjusted 0.{n}, above the allowed 0.02)"
             for n in range(1, 20)]
    message = "shoes: scheduled run cool-cat of deployment shoes: data base; not promoted: " + "; ".join(gates)
    assert len(message) > 1700  # one such commit subject was about 2,000 characters

    commit_version(paths, message)

    subject = git(paths.root, "log", "-1", "--format=%s").strip()
    body = git(paths.root, "log", "-1", "--format=%b").strip().splitlines()
    assert subject == "shoes: scheduled run cool-cat of deployment shoes: data base"
    assert body[0].startswith("not promoted: recall drop -0.001") and len(body) == 19
    assert max(len(line) for line in body) <= 100
    (record,) = read_history(paths.root, "shoes")
    assert record.decision == "not promoted: " + "; ".join(gates) and record.data_version == "base"


def test_nothing_changed_means_no_commit(checkout):
    before = git(checkout.root, "rev-parse", "HEAD")

    assert commit_version(checkout, "shoes: scheduled run: data base; promoted") is None
    assert git(checkout.root, "rev-parse", "HEAD") == before


def test_a_checkout_without_a_git_identity_still_commits_under_the_pipelines_name(checkout, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")  # no identity from the machine's own settings either
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(checkout.root, "config", "--unset", "user.name")
    git(checkout.root, "config", "--unset", "user.email")
    (checkout.root / "dvc.lock").write_text("changed\n")

    commit_version(checkout, "shoes: x")

    assert git(checkout.root, "log", "-1", "--format=%an <%ae>").strip() == \
        "training-pipeline <training-pipeline@localhost>"


def test_the_data_version_names_the_latest_drop(checkout):
    from tasks.lib.drops import DropIndex
    from tasks.lib.outputs import write_record

    assert data_version(checkout) == "base"
    write_record(checkout.drop_index_file, DropIndex(["20261202T070000Z-aa", "20261203T070000Z-bb"]))
    assert data_version(checkout) == "base + 2 drop(s), latest 20261203T070000Z-bb"
    assert checkout.root / "dvc.lock" in versioned_files(checkout)


@pytest.mark.parametrize("setting, commits", [("always", 1), ("deployments", 0), ("never", 0)])
def test_make_run_commits_each_dataset_only_when_the_setting_is_always(checkout, monkeypatch, setting, commits):
    import yaml

    from versioning.commits import main
    from tasks.lib.outputs import PromotionDecision, write_record
    from tests.conftest import project_params_document

    document = project_params_document()
    document["datasets"], document["versioning"] = ["mnist-sample"], {"commit": setting}
    (checkout.root / "params.yaml").write_text(yaml.safe_dump(document))
    paths = DatasetPaths(checkout.root, "mnist-sample")
    write_record(paths.promotion_file, PromotionDecision("mnist-sample", True, "promoted: every gate passed", 0.93,
                                                         None, None, {}, [], None))
    monkeypatch.chdir(checkout.root)
    before = int(git(checkout.root, "rev-list", "--count", "HEAD"))

    assert main([]) == 0

    assert int(git(checkout.root, "rev-list", "--count", "HEAD")) == before + commits
    if commits:
        assert git(checkout.root, "log", "-1", "--format=%s").strip() == \
            "mnist-sample: make run: data base; promoted: every gate passed"


def test_what_an_interrupted_stage_left_in_the_reports_folder_is_not_committed(checkout):
    paths = checkout
    paths.reports_dir.mkdir(parents=True)
    (paths.reports_dir / "metrics.json").write_text("{}\n")
    (paths.reports_dir / ".validate-x1y2").mkdir()
    (paths.reports_dir / ".validate-x1y2" / "validation.json").write_text("{}\n")
    (paths.reports_dir / ".metrics.abc.tmp.json").write_text("{")

    commit_version(paths, "shoes: x")

    assert git(paths.root, "show", "--name-only", "--format=", "HEAD").split() == ["reports/shoes/metrics.json"]


def test_a_new_datasets_first_commit_takes_the_gitignore_dvc_wrote_in_its_reports_folder(checkout):
    """A dataset added to params.yaml: its reports folder and DVC's .gitignore there are new to git (the first
    triggered run of such a dataset failed at `git commit`: pathspec '.../.gitignore' did not match)."""
    paths = checkout
    paths.reports_dir.mkdir(parents=True)
    (paths.reports_dir / "metrics.json").write_text("{}\n")
    (paths.reports_dir / ".gitignore").write_text("/data_docs\n")
    (paths.reports_dir / ".metrics.abc.tmp.json").write_text("{")

    commit_version(paths, "shoes: x")

    assert sorted(git(paths.root, "show", "--name-only", "--format=", "HEAD").split()) == [
        "reports/shoes/.gitignore", "reports/shoes/metrics.json"]


def test_a_new_datasets_first_commit_takes_the_link_to_its_local_dir(checkout, tmp_path_factory):
    """data/sources/<dataset> is a dependency of download: a clone without it saw download changed (the
    three-machine test's fresh clone after a new dataset's first remote run)."""
    import os

    paths = checkout
    photos = tmp_path_factory.mktemp("photos")
    paths.source_link.parent.mkdir(parents=True)
    os.symlink(photos, paths.source_link)
    (paths.root / "dvc.lock").write_text("changed\n")

    commit_version(paths, "shoes: x")

    assert sorted(git(paths.root, "show", "--name-only", "--format=", "HEAD").split()) == [
        "data/sources/shoes", "dvc.lock"]
    assert git(paths.root, "ls-files", "-s", "data/sources/shoes").startswith("120000 ")  # the link, not its files


def test_the_same_model_bytes_promoted_again_are_one_version(checkout):
    """Issue 27 item 9: re-promoting identical model bytes registered one md5 as v1.0.0 to v4.0.0."""
    import yaml

    paths = checkout

    def promote(model_md5: str, note: str) -> str:
        lock = {"schema": "2.0", "stages": {"train@shoes": {"outs": [{"path": "models/shoes/model.keras",
                                                                       "md5": model_md5}]}}}
        (paths.root / "dvc.lock").write_text(yaml.safe_dump(lock))
        paths.reports_dir.mkdir(parents=True, exist_ok=True)
        (paths.reports_dir / "metrics.json").write_text(f'{{"note": "{note}"}}\n')
        return commit_version(paths, f"shoes: {note}; promoted", "promoted")

    first = promote("a" * 32, "first")
    promote("a" * 32, "the same bytes again")
    promote("a" * 32, "and again")
    third = promote("b" * 32, "other bytes")
    back = promote("a" * 32, "the first bytes once more")

    versions = git(paths.root, "tag", "--list", "shoes-model@v*").split()
    assert versions == ["shoes-model@v1.0.0", "shoes-model@v2.0.0"]
    assert git(paths.root, "rev-list", "-n1", "shoes-model@v1.0.0").strip() == first
    assert git(paths.root, "rev-list", "-n1", "shoes-model@v2.0.0").strip() == third
    # the first bytes back in production: the prod stage moves to that commit, without a third version
    prod = [tag for tag in git(paths.root, "tag", "--points-at", back).split() if tag.startswith("shoes-model#prod#")]
    assert prod, git(paths.root, "tag", "--list")
    # and the newest version's bytes again: production moves back to them, still no new version
    again = promote("b" * 32, "the second bytes once more")
    assert git(paths.root, "tag", "--list", "shoes-model@v*").split() == versions
    assert any(tag.startswith("shoes-model#prod#") for tag in git(paths.root, "tag", "--points-at", again).split())
    # the same bytes as production: nothing to tag at all
    steady = promote("b" * 32, "unchanged")
    assert not git(paths.root, "tag", "--points-at", steady).split()
