"""`make history`: the runs of a dataset, read from the commits runs made (a real git repository)."""

import json
import subprocess

import yaml

from versioning.history import format_history, read_history


def commit(root, message, accuracy, model_md5, units):
    (root / "reports" / "shoes").mkdir(parents=True, exist_ok=True)
    (root / "reports" / "shoes" / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))
    lock = {"schema": "2.0", "stages": {"train@shoes": {
        "params": {"params.yaml": {"train": {"dense": {"units": units}, "epochs": 5}}},
        "outs": [{"path": "models/shoes/model.keras", "md5": model_md5}]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message],
                   cwd=root, check=True)


def test_each_run_commit_is_one_record_newest_first_with_its_metrics_model_and_changed_params(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"dense": {"units": 128}, "epochs": 5}}))
    commit(tmp_path, "shoes: scheduled run cool-cat of deployment shoes: data base; promoted: every gate passed; "
                     "no champion yet", 0.91, "a" * 32, 64)
    commit(tmp_path, "reports: a commit no run made", 0.911, "a" * 32, 64)
    commit(tmp_path, "shoes: started by hand run wise-owl of deployment shoes: data base + 1 drop(s), latest d1; "
                     "rejected: accuracy dropped by 0.02", 0.89, "b" * 32, 128)

    records = read_history(tmp_path, "shoes")

    assert [record.trigger for record in records] == ["started by hand run wise-owl of deployment shoes",
                                                      "scheduled run cool-cat of deployment shoes"]
    newest, first = records
    assert (newest.data_version, newest.test_accuracy, newest.model_md5) == ("base + 1 drop(s), latest d1", 0.89,
                                                                             "b" * 32)
    assert newest.decision == "rejected: accuracy dropped by 0.02" and newest.params_changed == {}
    assert first.decision == "promoted: every gate passed; no champion yet"
    assert first.params_changed == {"train.dense.units": 64}  # differs from today's params.yaml (128)
    text = format_history(records)
    assert text.splitlines()[1].split()[2:4] == ["0.8900", "bbbbbbbb"] and "params: train.dense.units=64" in text


def test_a_dataset_no_run_committed_says_so(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit(tmp_path, "first commit", 0.5, "c" * 32, 64)

    assert read_history(tmp_path, "shoes") == []
    assert format_history([]).startswith("no run has committed a version of this dataset yet")


def test_a_rollbacks_row_shows_the_params_of_the_model_it_restored(tmp_path):
    """Issue 27 item 10: the row showed the params of the model rolled back from (its commit's dvc.lock still
    records the last training)."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"dense": {"units": 128}, "epochs": 5}}))
    commit(tmp_path, "shoes: scheduled run cool-cat of deployment shoes: data base; promoted: every gate passed; "
                     "no champion yet", 0.91, "a" * 32, 64)
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    commit(tmp_path, "shoes: started by hand run wise-owl of deployment shoes: data base; promoted: every gate "
                     "passed", 0.92, "b" * 32, 256)
    promotion = {"challenger_accuracy": 0.91, "gates": [{"gate": "rollback", "model_md5": "a" * 32}]}
    (tmp_path / "reports" / "shoes" / "promotion.json").write_text(json.dumps(promotion))
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm",
                    f"shoes: make rollback: data base; rolled back to {first[:10]} by t: misses sandals"],
                   cwd=tmp_path, check=True)

    rollback = read_history(tmp_path, "shoes")[0]

    assert rollback.decision.startswith("rolled back to ") and rollback.model_md5 == "a" * 32
    assert rollback.params_changed == {"train.dense.units": 64}  # the restored model's, not 256
