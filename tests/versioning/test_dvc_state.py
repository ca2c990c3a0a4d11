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
