"""tasks/common/paths.py: where each stage writes, per dataset, and that no two writers share or nest a path.

dvc.yaml is checked against these paths in tests/test_dvc_yaml.py; here the paths are checked against each other:
DVC refuses overlapping outputs, and local state (the lock, timings, training backups) must stay outside every
versioned output so that `dvc checkout` never deletes it and dvc.lock never records it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tasks.common.paths import IDX_FILE_NAMES, SPLITS, STAGE_OUTPUTS, STAGES, DatasetPaths
from tests.conftest import project_params_document

# The datasets params.yaml defines, and names a user may choose (any name the config's pattern accepts).
DATASET_NAMES = (*project_params_document()["data"], "my_photos-2", "Shoes")


def every_output(paths: DatasetPaths) -> list[tuple[str, Path]]:
    return [(stage, path) for stage in STAGES for path in paths.outputs(stage)]


def overlap(first: Path, second: Path) -> bool:
    """True when the paths are the same or one lies inside the other (what DVC calls overlapping outputs)."""
    return first == second or first.is_relative_to(second) or second.is_relative_to(first)


def local_state(paths: DatasetPaths) -> dict[str, Path]:
    """Files the pipeline writes that are not DVC outputs (git-ignored, differ from run to run)."""
    return {"lock_file": paths.lock_file, "timings_dir": paths.timings_dir, "last_run_file": paths.last_run_file,
            "run_log_file": paths.run_log_file,
            "train_backup_dir": paths.train_backup_dir, "failed_validation_dir": paths.failed_validation_dir,
            "inbox_dir": paths.inbox_dir, "quarantine_dir": paths.quarantine_dir}


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_no_two_outputs_of_a_dataset_are_the_same_or_nested(tmp_path, dataset):
    outputs = every_output(DatasetPaths(tmp_path, dataset))

    clashes = [(a, b) for a, b in itertools.combinations(outputs, 2) if overlap(a[1], b[1])]

    assert len(outputs) == sum(len(names) for names in STAGE_OUTPUTS.values())
    assert clashes == []


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_every_output_lies_in_the_datasets_own_folder_under_the_root(tmp_path, dataset):
    paths = DatasetPaths(tmp_path, dataset)
    own_folders = (paths.raw_dir, paths.ingested_dir, paths.processed_dir, paths.model_dir, paths.reports_dir)

    for stage, path in every_output(paths):
        assert path.is_absolute() and path.is_relative_to(tmp_path), (stage, path)
        assert any(path == folder or path.is_relative_to(folder) for folder in own_folders), (stage, path)
        assert dataset in path.relative_to(tmp_path).parts, (stage, path)


def test_two_datasets_never_share_or_nest_a_path(tmp_path):
    """mnist and mnist-sample share a name prefix: their folders must still be apart (parts, not strings)."""
    def written(dataset):
        paths = DatasetPaths(tmp_path, dataset)
        return [path for _, path in every_output(paths)] + list(local_state(paths).values())

    for first, second in itertools.combinations(DATASET_NAMES, 2):
        clashes = [(a, b) for a in written(first) for b in written(second) if overlap(a, b)]
        assert clashes == [], (first, second)


@pytest.mark.parametrize("dataset", ["fashion-mnist", "custom"])
def test_local_state_lies_outside_every_versioned_output(tmp_path, dataset):
    paths = DatasetPaths(tmp_path, dataset)

    for name, state in local_state(paths).items():
        inside = [(stage, path) for stage, path in every_output(paths) if overlap(state, path)]
        assert inside == [], name


def test_the_lock_sits_beside_dvcs_own_lock_one_per_dataset(tmp_path):
    locks = {DatasetPaths(tmp_path, dataset).lock_file for dataset in DATASET_NAMES}

    assert len(locks) == len(DATASET_NAMES)
    assert {lock.parent for lock in locks} == {tmp_path / ".dvc" / "tmp"}


def test_production_copies_map_train_and_evaluate_outputs_into_the_production_folder(tmp_path):
    paths = DatasetPaths(tmp_path, "fashion-mnist")
    written_before_promote = {path for stage in STAGES[:STAGES.index("promote")] for path in paths.outputs(stage)}

    copies = paths.production_copies()

    assert set(copies) <= written_before_promote
    assert all(destination.parent == paths.production_dir for destination in copies.values())
    assert len(set(copies.values())) == len(copies)
    assert all(source.name == destination.name for source, destination in copies.items())
    assert paths.production_model_file in copies.values()
    # The promotion record is written by promote itself, never overwritten by a copy.
    assert paths.production_promotion_file.parent == paths.production_dir
    assert paths.production_promotion_file not in copies.values()


def test_production_copies_read_what_evaluate_and_train_write(tmp_path):
    paths = DatasetPaths(tmp_path, "mnist-sample")

    copies = paths.production_copies()

    assert copies[paths.model_file] == paths.production_model_file
    assert copies[paths.metrics_file] == paths.production_metrics_file
    assert copies[paths.test_predictions_file] == paths.production_predictions_file


def test_raw_files_are_the_four_standard_names_inside_the_raw_folder(tmp_path):
    paths = DatasetPaths(tmp_path, "mnist")

    raw = {(split, kind): paths.raw_file(split, kind) for split in SPLITS for kind in ("images", "labels")}

    assert {path.parent for path in raw.values()} == {paths.raw_dir}
    assert {path.name for path in raw.values()} == set(IDX_FILE_NAMES.values())
    assert raw[("test", "images")].name == "t10k-images-idx3-ubyte"  # MNIST's name for the test split
    with pytest.raises(KeyError):
        paths.raw_file("validation", "images")


def test_processed_files_are_one_npz_per_split_inside_the_processed_folder(tmp_path):
    paths = DatasetPaths(tmp_path, "custom")

    processed = [paths.processed_file(split) for split in SPLITS]

    assert [path.name for path in processed] == ["train.npz", "test.npz"]
    assert all(path.parent == paths.processed_dir for path in processed)


def test_stage_timing_files_are_one_per_stage_inside_the_timings_folder(tmp_path):
    paths = DatasetPaths(tmp_path, "custom")

    timing_files = [paths.stage_timing_file(stage) for stage in STAGES]

    assert len(set(timing_files)) == len(STAGES)
    assert all(path.parent == paths.timings_dir and path.suffix == ".json" for path in timing_files)


def test_data_docs_index_and_failed_validation_stay_apart(tmp_path):
    """A failed validation is kept aside: it must not land in (and be versioned with) the good Data Docs."""
    paths = DatasetPaths(tmp_path, "custom")

    assert paths.data_docs_index.parent == paths.data_docs_dir
    assert not overlap(paths.failed_validation_dir, paths.data_docs_dir)
    assert not overlap(paths.failed_validation_dir, paths.validation_file)


def test_moving_the_root_moves_every_path_and_nothing_else(tmp_path):
    here, there = DatasetPaths(tmp_path / "a", "custom"), DatasetPaths(tmp_path / "b" / "c", "custom")

    for stage in STAGES:
        assert ([path.relative_to(here.root) for path in here.outputs(stage)]
                == [path.relative_to(there.root) for path in there.outputs(stage)]), stage
    assert here.lock_file.relative_to(here.root) == there.lock_file.relative_to(there.root)


def test_an_unknown_stage_has_no_outputs(tmp_path):
    with pytest.raises(KeyError, match="deploy"):
        DatasetPaths(tmp_path, "custom").outputs("deploy")
