"""versioning/dvc_state.py: the dataset's DVC stage names and what dvc.lock records for a stage's output.

`changed_stages` and `record_outputs` run against real DVC repositories in tests/integration/test_prefect_flow.py.
"""

import yaml

from versioning.dvc_state import locked_output_hash, stage_targets
from tasks.common.paths import STAGES


def test_stage_targets_are_the_pipelines_stages_for_the_dataset_in_order():
    assert stage_targets("mnist-sample") == [f"{stage}@mnist-sample" for stage in STAGES]


def test_the_first_output_hash_of_a_stage_is_read_from_dvc_lock_and_none_when_absent(tmp_path):
    assert locked_output_hash(tmp_path, "promote", "custom") is None  # no dvc.lock yet
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "promote@custom": {"cmd": "python -m tasks.promote custom",
                           "outs": [{"path": "models/custom/production", "md5": "abc.dir"}]},
        "train@custom": {"cmd": "python -m tasks.train custom"}}}))

    assert locked_output_hash(tmp_path, "promote", "custom") == "abc.dir"
    assert locked_output_hash(tmp_path, "train", "custom") is None  # recorded without outputs
    assert locked_output_hash(tmp_path, "promote", "fashion-mnist") is None  # never recorded


def test_a_file_dvc_cannot_copy_into_its_cache_is_not_logged_with_a_traceback_while_outputs_are_recorded(caplog):
    """The CI run of 76b2b82: with an immutable cache, the one-line OutputsNotRecordedError came after DVC's own
    "failed to transfer" and its traceback (logged for each file of a several-file output, then raised). While
    record_outputs commits, DVC's logging of such an OSError is dropped; other records of that logger are kept."""
    import logging

    from dvc_data.hashfile.transfer import _log_exception, logger

    from versioning.dvc_state import _transfer_errors_unlogged

    refused = PermissionError(1, "Operation not permitted", ".dvc/cache/files/md5/3f")
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        with _transfer_errors_unlogged():
            _log_exception("3f59b06b31", refused)
            logger.debug("transfer dir: %s with %d files", "3f.dir", 2)
        assert [record.getMessage() for record in caplog.records] == ["transfer dir: 3f.dir with 2 files"]
        _log_exception("3f59b06b31", refused)  # outside record_outputs, DVC logs as it does
    assert caplog.records[-1].getMessage() == "failed to transfer '3f59b06b31'" and caplog.records[-1].exc_info
