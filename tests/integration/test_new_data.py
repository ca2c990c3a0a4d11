"""README "New data", step by step, in a copy of this repository: an image-folder dataset of the user's own, two
drops into its inbox, `dvc repro` after each, and two data versions in DVC with the model decision for each."""

import json

import numpy as np
import pytest

from tasks.common.paths import DatasetPaths
from tests.conftest import real_fashion_images, write_image_folder
from tests.integration.repo import copy_repository, run

# Slow (about 2 minutes: three `dvc repro` runs of eight stage processes each); `make test-slow` and CI run it.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
SHOES = ["Sandal", "Sneaker", "Ankle boot"]  # Fashion-MNIST's classes 5, 7 and 9


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
                                     "min_accuracy": 0.8, "train": {"epochs": 6}}
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
    return repo, paths, steps


def test_each_drop_is_seen_by_dvc_ingested_and_trained_on(walked):
    repo, paths, steps = walked
    for name in ("drop-1", "drop-2"):
        assert "ingest@shoes" in steps[f"{name} status"].stdout
        assert "Running stage 'ingest@shoes'" in steps[name].stdout
        assert "Running stage 'train@shoes'" in steps[name].stdout
        assert isinstance(steps[f"{name} promotion"]["promoted"], bool)
    summary = json.loads(paths.ingest_summary_file.read_text())
    assert summary["images_added"] == {"train": 600, "test": 0} and len(summary["drops"]) == 2
    assert json.loads(paths.validation_file.read_text())["image_counts"] == {"train": 900, "test": 90}


def test_the_inbox_is_empty_and_dvc_is_clean_afterwards(walked):
    repo, paths, _ = walked
    assert sorted(path.name for path in paths.inbox_dir.rglob("*")) == [".gitkeep"]
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_dvc_shows_each_drop_as_a_new_data_version(walked):
    repo, paths, _ = walked
    drops = [entry["drop"] for entry in json.loads(paths.ingest_summary_file.read_text())["drops"]]

    second = run(["dvc", "diff", "HEAD~1", "HEAD", "--json"], repo)
    first = run(["dvc", "diff", "HEAD~2", "HEAD~1", "--json"], repo)

    assert any(entry["path"].startswith(f"data/ingested/shoes/{drops[1]}/") for entry in json.loads(second.stdout)["added"])
    assert any(entry["path"].startswith(f"data/ingested/shoes/{drops[0]}/") for entry in json.loads(first.stdout)["added"])
    checkout = run(["git", "checkout", "-q", "HEAD~1"], repo), run(["dvc", "checkout", "-q"], repo)
    assert checkout and sorted(child.name for child in paths.ingested_dir.iterdir() if child.is_dir()) == drops[:1]
    run(["git", "checkout", "-q", "-"], repo)
    run(["dvc", "checkout", "-q"], repo)
