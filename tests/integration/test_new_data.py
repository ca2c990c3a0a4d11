"""docs/DATA.md "New data", step by step, in a copy of this repository: an image-folder dataset of the user's own, two
drops into its inbox, `dvc repro` after each, and two data versions in DVC with the model decision for each; then,
under `drift.action: block`, a batch of one class that drift stops until `make accept-drift`."""

import html
import json
import sys
from pathlib import Path

import numpy as np
import yaml
import pytest

from tasks.common.paths import DatasetPaths
from tests.conftest import real_fashion_images, write_image_folder
from tests.integration.repo import copy_repository, run

# Slow (about 3 minutes: five `dvc repro` runs of nine stage processes each); `make test-slow` and CI run it.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
SHOES = ["Sandal", "Sneaker", "Ankle boot"]  # Fashion-MNIST's classes 5, 7 and 9
REASON = "summer: it's mostly sandals"  # the quote, as people write


def shoes(split: str, start: int, count: int):
    images, labels = real_fashion_images(8000 if split == "train" else 2000, split)
    keep = np.flatnonzero(np.isin(labels, [5, 7, 9]))[start:start + count]
    return images[keep], np.searchsorted([5, 7, 9], labels[keep]).astype(np.uint8)


def edit_params(photos):
    def edit(document):
        document["datasets"] = ["shoes"]
        document["ingest"]["settle_seconds"] = 0  # the files are complete when written (waiting: test_ingest.py)
        document["data"]["shoes"] = {"source": "images", "local_dir": str(photos), "mirrors": [],
                                     "class_names": SHOES, "expected_counts": None, "threshold": 0.97,
                                     "min_accuracy": 0.8, "framing": "box", "train": {"epochs": 6}}
    return edit


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    write_image_folder(photos, {"train": shoes("train", 0, 300), "test": shoes("test", 0, 90)}, SHOES)
    repo = copy_repository(tmp_path_factory.mktemp("repo"), edit_params(photos))
    paths = DatasetPaths(repo, "shoes")
    steps = {"first": run(["dvc", "repro"], repo)}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "shoes: first version"], repo)
    for name, (start, suffix) in {"drop-1": (300, ".png"), "drop-2": (600, ".jpg")}.items():
        write_image_folder(paths.inbox_dir, {"train": shoes("train", start, 300)}, SHOES, suffix=suffix, prefix=name)
        steps[f"{name} status"] = run(["dvc", "status"], repo)
        steps[name] = run(["dvc", "repro"], repo)
        steps[f"{name} promotion"] = json.loads(paths.promotion_file.read_text())
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", f"shoes: {name}"], repo)
        steps[f"{name} page"] = paths.report_file.read_text()
        steps[f"{name} commit"] = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    steps["summary after two drops"] = json.loads(paths.ingest_summary_file.read_text())
    steps["validation after two drops"] = json.loads(paths.validation_file.read_text())
    # Step 5: block on drift, and a batch of sandals only.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["drift"]["action"] = "block"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    steps["model before drift"] = paths.model_file.read_bytes()
    batch = shoes("train", 900, 1200)
    sandals = tuple(array[batch[1] == 0][:250] for array in batch)  # train: 300 of each class, then 550 sandals
    write_image_folder(paths.inbox_dir, {"train": sandals}, SHOES, prefix="sandals")
    steps["blocked"] = run(["dvc", "repro"], repo, check=False)
    steps["blocked status"] = run(["dvc", "status"], repo)
    # `make accept-drift` with this checkout's virtualenv (a copy has none of its own; VENV is the Makefile's)
    steps["accept"] = run(["make", "accept-drift", f"VENV={Path(sys.executable).parent.parent}", "DATASET=shoes",
                           f"REASON={REASON}"], repo)
    steps["accepted"] = run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "shoes: summer sandals, drift accepted"], repo)
    return repo, paths, steps


def test_each_drop_is_seen_by_dvc_ingested_and_trained_on(walked):
    repo, paths, steps = walked
    for name in ("drop-1", "drop-2"):
        assert "ingest@shoes" in steps[f"{name} status"].stdout
        assert "Running stage 'ingest@shoes'" in steps[name].stdout
        assert "Running stage 'train@shoes'" in steps[name].stdout
        assert isinstance(steps[f"{name} promotion"]["promoted"], bool)
    summary = steps["summary after two drops"]
    assert summary["images_added"] == {"train": 600, "test": 0} and len(summary["drops"]) == 2
    assert steps["validation after two drops"]["image_counts"] == {"train": 900, "test": 90}


def test_the_report_page_shows_the_drift_check_and_the_decision(walked):
    _, _, steps = walked
    for name in ("drop-1", "drop-2"):
        page = steps[f"{name} page"]
        assert 'data-drift="none"' in page and "no drift from the data the champion learned from" in page
        assert f'data-promoted="{str(steps[f"{name} promotion"]["promoted"]).lower()}"' in page


def test_a_batch_of_one_class_is_versioned_but_blocked_until_accepted(walked):
    repo, paths, steps = walked
    blocked = steps["blocked"]
    assert blocked.returncode != 0
    assert "drift failed for shoes: DriftBlockedError: drift from the data the champion learned from" in blocked.stderr
    assert "train labels: Jensen-Shannon distance 0." in blocked.stderr and "> drift.max_label_js_distance 0.1 (" in blocked.stderr
    assert "Running stage 'ingest@shoes'" in blocked.stdout and "Running stage 'train@shoes'" not in blocked.stdout
    status = steps["blocked status"].stdout
    assert "ingest@shoes" not in status and "drift@shoes" in status  # versioned in dvc.lock, not trained on
    assert "drift accepted by " in steps["accept"].stdout and f"reason: {REASON}" in steps["accept"].stdout
    accepted = steps["accepted"]
    assert "Running stage 'train@shoes'" in accepted.stdout
    assert paths.model_file.read_bytes() != steps["model before drift"]
    page = paths.report_file.read_text()
    assert 'data-drift="accepted"' in page and html.escape(REASON) in page and 'data-promoted="' in page
    assert json.loads(paths.drift_acceptance_file.read_text())["reason"] == REASON


def test_the_inbox_is_empty_and_dvc_is_clean_afterwards(walked):
    repo, paths, _ = walked
    assert sorted(path.name for path in paths.inbox_dir.rglob("*")) == [".gitkeep"]
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_dvc_shows_each_drop_as_a_new_data_version(walked):
    repo, paths, steps = walked
    drops = [entry["drop"] for entry in steps["summary after two drops"]["drops"]]
    first_drop, second_drop = steps["drop-1 commit"], steps["drop-2 commit"]

    second = run(["dvc", "diff", first_drop, second_drop, "--json"], repo)
    first = run(["dvc", "diff", f"{first_drop}~1", first_drop, "--json"], repo)

    assert any(entry["path"].startswith(f"data/ingested/shoes/{drops[1]}/") for entry in json.loads(second.stdout)["added"])
    assert any(entry["path"].startswith(f"data/ingested/shoes/{drops[0]}/") for entry in json.loads(first.stdout)["added"])
    checkout = run(["git", "checkout", "-q", first_drop], repo), run(["dvc", "checkout", "-q"], repo)
    assert checkout and sorted(child.name for child in paths.ingested_dir.iterdir() if child.is_dir()) == drops[:1]
    run(["git", "checkout", "-q", "-"], repo)
    run(["dvc", "checkout", "-q"], repo)
