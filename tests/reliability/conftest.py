"""The fault-injection suite's shared pieces: a real last good run to break, and byte-level snapshots.

Every case here checks three things: the error type, that the message names the file or field at fault,
and that the outputs of the last good run are byte-identical afterwards (`snapshot` before == after).
"""

from __future__ import annotations

import shutil
from hashlib import sha256
from pathlib import Path

import pytest

from tasks.common.config import Params, parse_params
from tasks.drift import check_drift
from tasks.evaluate import evaluate_model
from tasks.normalize import normalize_dataset
from tasks.common.paths import DatasetPaths
from tasks.promote import promote_model
from tasks.report import write_report
from tasks.train import train_model
from tasks.validate import validate_dataset
from tests.conftest import make_images, project_params_document, write_idx_dataset

TRAIN_COUNT, TEST_COUNT = 60, 20


def snapshot(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under `root` by relative path, except those under the `ignore` prefixes."""
    return {str(path.relative_to(root)): sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(root).rglob("*"))
            if path.is_file() and not str(path.relative_to(root)).startswith(ignore)}


def custom_params(**train) -> Params:
    """The real params.yaml with `custom` as the dataset (60 / 20 generated images), training kept short."""
    document = project_params_document()
    document["datasets"] = ["custom"]
    document["data"]["custom"].update(expected_counts={"train": TRAIN_COUNT, "test": TEST_COUNT}, min_accuracy=0.0,
                                      threshold=1.0)
    document["train"].update({"epochs": 1, "batch_size": 16, **train})
    return parse_params(document)


def run_pipeline_from_validate(paths: DatasetPaths, params: Params, train_params=None) -> None:
    """The stages after download, in the flow's order, calling the same functions its tasks call.
    `train_params` replaces `params.train_for(dataset)`."""
    dataset = params.dataset(paths.dataset)
    validate_dataset(paths, dataset, params.validate_)
    check_drift(paths, dataset, params.drift)
    normalize_dataset(paths)
    train_model(paths, train_params or params.train_for(paths.dataset))
    evaluate_model(paths, dataset)
    promote_model(paths, dataset, params.promote)
    write_report(paths, dataset, params.evaluate)


@pytest.fixture(scope="session")
def last_good_run(tmp_path_factory) -> Path:
    """A repository root after one complete, successful run on generated `custom` data: raw and processed
    data, model, reports and a promoted production model. Tests break a copy of it (`good_root`)."""
    root = tmp_path_factory.mktemp("last-good-run")
    paths = DatasetPaths(root, "custom")
    write_idx_dataset(paths.raw_dir, make_images(TRAIN_COUNT, seed=1), make_images(TEST_COUNT, seed=2))
    run_pipeline_from_validate(paths, custom_params())
    assert paths.production_model_file.is_file()
    return root


@pytest.fixture
def good_root(last_good_run, tmp_path) -> DatasetPaths:
    """A private copy of the last good run."""
    shutil.copytree(last_good_run, tmp_path / "repo")
    return DatasetPaths(tmp_path / "repo", "custom")
