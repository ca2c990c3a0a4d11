"""`make rollback`, `predict --version` and DVC's model registry on a real git + DVC repository: two runs of the
real pipeline on mnist-sample (5,000 real digits) commit two champions, then the first comes back."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from PIL import Image

from tasks.common.paths import DatasetPaths
from tasks.lib.mnist_sample import build_mnist_sample
from tasks.lib.model_versions import file_md5
from tasks.lib.run_history import read_history
from tests.conftest import run_log_html
from tests.integration.repo import copy_repository, mnist_sample_only, run

DATASET = "mnist-sample"
ROLLBACK = ["python", "-m", "versioning.rollback", "--dataset", DATASET]
# Two real pipeline runs before the first test: over a minute, so `make test-slow` runs it (CI runs both).
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def mnist_sample_committing_every_run(document: dict) -> None:
    mnist_sample_only(document)
    document["versioning"]["commit"] = "always"  # `make run` commits, as deployment runs do
    # Two seeds give two models of about the same accuracy: gates loose enough that the second is promoted.
    document["promote"].update(max_accuracy_drop=0.05, max_recall_drop=0.5)


def make_run(repo) -> None:
    """What `make run` does after setup."""
    for command in (["python", "-m", "tasks.check_params"], ["dvc", "repro"], ["python", "-m", "versioning.commits"]):
        run(command, repo)


def clean(repo) -> tuple[str, str]:
    return run(["git", "status", "--porcelain"], repo).stdout, run(["dvc", "status"], repo).stdout


@pytest.fixture(scope="module")
def two_champions(tmp_path_factory):
    repo = copy_repository(tmp_path_factory.mktemp("repo"), mnist_sample_committing_every_run)
    make_run(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["seed"] = 7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "train with seed 7"], repo)
    make_run(repo)
    second, first = read_history(repo, DATASET)
    assert first.decision.startswith("promoted") and second.decision.startswith("promoted"), (first, second)
    assert first.model_md5 != second.model_md5
    return repo, first, second


def production_md5(repo) -> str:
    return file_md5(DatasetPaths(repo, DATASET).production_model_file)


def test_a_rollback_that_cannot_be_done_says_why_in_one_line_and_changes_nothing(two_champions):
    repo, first, second = two_champions
    before = production_md5(repo), clean(repo), run(["git", "rev-parse", "HEAD"], repo).stdout

    unknown = run(ROLLBACK + ["--to", "no-such-version", "--reason", "r"], repo, check=False)
    current = run(ROLLBACK + ["--to", second.commit, "--reason", "r"], repo, check=False)
    no_reason = run(ROLLBACK + ["--to", first.commit, "--reason", " "], repo, check=False)

    assert unknown.returncode == 1 and unknown.stderr.strip().splitlines() == [
        f"rollback failed: VersionError: version 'no-such-version': no such commit in {repo} (`make history "
        "DATASET=...` lists the versions of a dataset)"]
    assert current.returncode == 1 and re.fullmatch(
        rf"rollback failed: VersionError: version {second.commit}: its champion \(md5 {second.model_md5[:8]}\) is "
        r"already the production model; nothing to do\n", current.stderr)
    assert no_reason.returncode == 1 and "say why (REASON=...)" in no_reason.stderr
    assert "Traceback" not in unknown.stderr + current.stderr + no_reason.stderr
    assert (production_md5(repo), clean(repo), run(["git", "rev-parse", "HEAD"], repo).stdout) == before


def test_rollback_restores_the_earlier_champion_records_it_everywhere_and_leaves_status_clean(two_champions):
    repo, first, second = two_champions
    assert production_md5(repo) == second.model_md5

    done = run(ROLLBACK + ["--to", first.commit, "--reason", "misses sevens in the new scans"], repo)

    assert production_md5(repo) == first.model_md5
    assert f"the champion of {first.commit} again" in done.stdout
    git_status, dvc_status = clean(repo)
    assert git_status == "" and "Data and pipelines are up to date" in dvc_status
    newest = read_history(repo, DATASET)[0]
    assert newest.decision == f"rolled back to {first.commit}: misses sevens in the new scans"
    assert newest.trigger.startswith("make rollback by ")
    assert (newest.test_accuracy, newest.model_md5) == (first.test_accuracy, first.model_md5)
    shown = run(["python", "-m", "versioning.history", "--dataset", DATASET], repo).stdout
    assert shown.splitlines()[1].split()[2:4] == [f"{first.test_accuracy:.4f}", first.model_md5[:8]]
    assert "rolled back to" in run_log_html(DatasetPaths(repo, DATASET))  # the report page's history
    paths = DatasetPaths(repo, DATASET)
    refused = json.loads(paths.production_rollbacks_file.read_text())["models"]
    assert [(model["model_md5"], model["reason"]) for model in refused] == [
        (second.model_md5, "misses sevens in the new scans")]
    promotion = json.loads(paths.promotion_file.read_text())
    assert promotion["reason"].startswith(f"rolled back to {first.commit} by ")
    assert promotion["challenger_accuracy"] == first.test_accuracy


def test_dvc_artifacts_get_finds_the_model_in_production_and_each_version(two_champions, tmp_path):
    repo, first, second = two_champions

    run(["dvc", "artifacts", "get", ".", f"{DATASET}-model", "--stage", "prod", "-o", str(tmp_path / "prod.keras")],
        repo)
    run(["dvc", "artifacts", "get", ".", f"{DATASET}-model", "--rev", "v2.0.0", "-o", str(tmp_path / "v2.keras")],
        repo)

    assert file_md5(tmp_path / "prod.keras") == first.model_md5  # after the rollback
    assert file_md5(tmp_path / "v2.keras") == second.model_md5


def test_promote_refuses_the_model_rolled_back_from(two_champions):
    repo, first, second = two_champions
    assert file_md5(DatasetPaths(repo, DATASET).model_file) == second.model_md5  # the last trained: rolled back from

    run(["dvc", "repro", "--force", "--single-item", f"promote@{DATASET}"], repo)

    decision = json.loads(DatasetPaths(repo, DATASET).promotion_file.read_text())
    assert not decision["promoted"] and decision["reason"].startswith("rejected: not rolled back failed (this model")
    assert "misses sevens in the new scans" in decision["reason"]
    assert production_md5(repo) == first.model_md5


def test_predict_version_classifies_with_the_model_of_any_recorded_run(two_champions, tmp_path):
    repo, first, second = two_champions
    digit = build_mnist_sample()[("test", "images")][0]
    Image.fromarray(digit).resize((112, 112)).save(tmp_path / "digit.png")
    predict = ["python", "-m", "tools.predict", "--dataset", DATASET, str(tmp_path / "digit.png")]

    answers = {record.commit: run(predict + ["--version", record.commit], repo) for record in (first, second)}
    unknown = run(predict + ["--version", "nope"], repo, check=False)

    for record in (first, second):
        answer = answers[record.commit]
        assert f"model of version {record.commit} (md5 {record.model_md5[:8]}" in answer.stderr
        assert re.fullmatch(rf"{re.escape(str(tmp_path / 'digit.png'))}: (\d [\d.]+%(, )?){{3}}\n", answer.stdout)
    assert unknown.returncode == 1 and "predict failed: VersionError: version 'nope': no such commit" in unknown.stderr
