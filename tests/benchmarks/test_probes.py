"""The probes `make bench` and the tuning notes train with never read the test split (issue 29): each one runs here
in a root whose test files are absent, and its figures are validation figures. Only the evaluate stage (the final
report) and the promotion gate read the test split."""

from __future__ import annotations

import json
import runpy
import shutil

import pytest
import yaml

from tasks.common.paths import DatasetPaths
from tasks.lib.startup import import_large
from tests.conftest import PROJECT_ROOT, project_params_document

DATASET = "mnist-sample"


@pytest.fixture
def root_without_test_split(real_digits_root, tmp_path):
    """A root with mnist-sample's training split ready, its test split deleted (processed and raw), and params that
    train one epoch of the default model."""
    for folder in ("data", "reports"):
        shutil.copytree(real_digits_root / folder, tmp_path / folder)
    paths = DatasetPaths(tmp_path, DATASET)
    test_files = [paths.processed_file("test"), *paths.raw_dir.glob("t10k-*")]
    assert len(test_files) == 3 and all(path.is_file() for path in test_files)
    for path in test_files:
        path.unlink()
    document = project_params_document()
    document["data"][DATASET]["train"]["epochs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return tmp_path


def probe(capsys, monkeypatch, script: str, *arguments: str) -> dict:
    """Run a probe script as its own `__main__`, in this process (TensorFlow is imported once for the suite's
    worker, not once per probe); its JSON line."""
    import_large("keras")  # first here, so the probe's import_large(freeze=True) finds it and freezes nothing
    monkeypatch.setattr("sys.argv", [script, *arguments])
    capsys.readouterr()
    runpy.run_path(str(PROJECT_ROOT / script), run_name="__main__")
    return json.loads(capsys.readouterr().out.splitlines()[-1])


def test_each_probe_trains_and_reports_validation_figures_with_the_test_split_absent(root_without_test_split, capsys,
                                                                                     monkeypatch):
    trained = probe(capsys, monkeypatch, "benchmarks/train_probe.py", str(root_without_test_split), DATASET)
    cnn = probe(capsys, monkeypatch, "benchmarks/cnn_probe.py", str(root_without_test_split), DATASET, "43")

    assert trained["stop_epoch"] == 1 and 0.3 < trained["val_accuracy"] <= 1
    assert "test_accuracy" not in trained and "test_accuracy" not in cnn
    assert cnn["stop_epoch"] == 1 and cnn["model"] == "cnn"
    (epoch, seconds, val_accuracy), = cnn["curve"]
    assert epoch == 1 and 0 < seconds <= cnn["train_seconds"] + 0.01 and val_accuracy == cnn["val_accuracy"]
