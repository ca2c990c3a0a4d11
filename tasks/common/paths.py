"""Every file the pipeline reads or writes, defined once. dvc.yaml mirrors these (tests/test_dvc_yaml.py checks it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PARAMS_FILE = "params.yaml"
# Written by the check_params stage (tasks/check_params.py) once params.yaml passed its checks; every stage in
# dvc.yaml depends on it, so `dvc repro` refuses a bad params.yaml before it removes any stage's outputs.
PARAMS_CHECK_FILE = "data/params_check.txt"
PARAMS_CHECK_STAGE = "check_params"
SPLITS = ("train", "test")
# The standard MNIST file names; the raw folder holds them decompressed.
# Each stage's outputs (DatasetPaths attributes), in pipeline order. This is the one list of stages: STAGES is its
# keys, and dvc.yaml's stages and outputs, the Prefect tasks and the flow's order are checked against it
# (tests/test_dvc_yaml.py, tests/integration/test_prefect_flow.py).
STAGE_OUTPUTS = {
    "download": ("raw_dir",),
    "ingest": ("ingested_dir", "ingest_summary_file"),
    "validate": ("validation_file", "data_docs_dir"),
    "drift": ("drift_file", "data_profile_file"),
    "normalize": ("processed_dir",),
    "train": ("model_file", "runtime_model_file", "training_summary_file", "training_metrics_file",
              "training_history_file"),
    "evaluate": ("metrics_file", "class_scores_file", "predictions_file", "test_predictions_file"),
    "promote": ("production_dir", "promotion_file"),
    "report": ("report_file", "confusion_matrix_png", "misclassified_png"),
}
STAGES = tuple(STAGE_OUTPUTS)
IDX_FILE_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# Kept in each dataset's inbox so the folder exists in a fresh clone (DVC hashes it as a dependency of ingest).
INBOX_PLACEHOLDER = ".gitkeep"
# The same, in data/sources/<dataset> for a dataset without a local_dir (a dependency of download).
SOURCE_PLACEHOLDER = ".gitkeep"
# Kept in each dataset's drift acceptance folder for the same reason (a dependency of the drift stage).
DRIFT_PLACEHOLDER = ".gitkeep"
# In each quarantined drop's folder: a line per refused file saying why, and the files under their inbox paths.
QUARANTINE_REASONS = "REASONS.txt"
QUARANTINED_FILES = "files"
# An image-folder dataset (source `images`): <local_dir>/<split>/<class folder>/<file> with one of these suffixes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def class_folder_name(class_name: str) -> str:
    """The folder holding a class's images: the class name, with '/' (which no folder name can hold) written '-'.
    The class's index (0, 1, ...) is accepted as its folder too (tasks/lib/image_folder.py)."""
    return class_name.replace("/", "-")


@dataclass(frozen=True)
class DatasetPaths:
    """Where one dataset's data, model and reports live, under the repository root."""

    root: Path
    dataset: str

    def outputs(self, stage: str) -> tuple[Path, ...]:
        """What `stage` writes for this dataset (as dvc.yaml declares it)."""
        return tuple(getattr(self, name) for name in STAGE_OUTPUTS[stage])

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw" / self.dataset

    def raw_file(self, split: str, kind: str) -> Path:
        return self.raw_dir / IDX_FILE_NAMES[(split, kind)]

    @property
    def source_link(self) -> Path:
        """data/sources/<dataset>: a symbolic link to the dataset's local_dir, or a folder holding only
        SOURCE_PLACEHOLDER when it has none (tasks/check_params.py keeps it so; in git, so a clone has it). A
        dependency of the download stage: `dvc repro` sees files added to or changed in local_dir, as it sees
        the inbox."""
        return self.root / "data" / "sources" / self.dataset

    @property
    def overrides_file(self) -> Path:
        """data/overrides/<dataset>.yaml: the dotted params.yaml keys a flow run of this dataset overrides while it
        runs, `{}` (as git holds it) otherwise; tasks/check_params.py makes it for a dataset that has none. Every
        stage of the dataset that reads params reads params.yaml through it (tasks.common.config.load_run_params)
        and lists it as a params file in dvc.yaml, so dvc.lock records a run's overrides while params.yaml, which
        every other run reads, never changes."""
        return self.root / "data" / "overrides" / f"{self.dataset}.yaml"

    @property
    def inbox_dir(self) -> Path:
        """Where new labelled images land: inbox/<dataset>/{train,test}/<class>/ (not versioned; ingest empties it)."""
        return self.root / "data" / "inbox" / self.dataset

    @property
    def ingested_dir(self) -> Path:
        """The drops ingested so far, one shard each (tasks/lib/drops.py); with raw_dir, the whole dataset."""
        return self.root / "data" / "ingested" / self.dataset

    @property
    def drop_index_file(self) -> Path:
        return self.ingested_dir / "index.json"

    def drop_dir(self, drop: str) -> Path:
        return self.ingested_dir / drop

    @property
    def quarantine_dir(self) -> Path:
        """Files ingest refused, a folder per drop with the reasons (local state, not versioned)."""
        return self.root / "data" / "quarantine" / self.dataset

    @property
    def drift_acceptance_dir(self) -> Path:
        """What people decided about drift (git-tracked): `make accept-drift` writes the acceptance here."""
        return self.root / "data" / "drift" / self.dataset

    @property
    def drift_acceptance_file(self) -> Path:
        return self.drift_acceptance_dir / "accepted.json"

    @property
    def processed_dir(self) -> Path:
        return self.root / "data" / "processed" / self.dataset

    def processed_file(self, split: str) -> Path:
        return self.processed_dir / f"{split}.npz"

    @property
    def model_dir(self) -> Path:
        return self.root / "models" / self.dataset

    @property
    def model_file(self) -> Path:
        return self.model_dir / "model.keras"

    @property
    def runtime_model_file(self) -> Path:
        """The same model exported for ONNX Runtime: what evaluate, promote and predict run (tasks/lib/inference.py)."""
        return self.model_dir / "model.onnx"

    @property
    def production_dir(self) -> Path:
        return self.model_dir / "production"

    @property
    def production_model_file(self) -> Path:
        return self.production_dir / "model.keras"

    @property
    def production_runtime_model_file(self) -> Path:
        return self.production_dir / "model.onnx"

    @property
    def production_predictions_file(self) -> Path:
        return self.production_dir / "test_predictions.npz"

    @property
    def production_metrics_file(self) -> Path:
        return self.production_dir / "metrics.json"

    @property
    def production_promotion_file(self) -> Path:
        return self.production_dir / "promotion.json"

    @property
    def production_rollbacks_file(self) -> Path:
        """Champions `make rollback` replaced, kept with the champion: promote never promotes them again."""
        return self.production_dir / "rolled_back.json"

    @property
    def production_profile_file(self) -> Path:
        """The profile of the data the champion learned from: the reference the drift stage compares with."""
        return self.production_dir / "data_profile.json"

    def production_copies(self) -> dict[Path, Path]:
        """What promoting a model copies into the production folder: source -> destination."""
        return {self.model_file: self.production_model_file,
                self.runtime_model_file: self.production_runtime_model_file,
                self.metrics_file: self.production_metrics_file,
                self.test_predictions_file: self.production_predictions_file,
                self.data_profile_file: self.production_profile_file}

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports" / self.dataset

    @property
    def ingest_summary_file(self) -> Path:
        return self.reports_dir / "ingest.json"

    @property
    def validation_file(self) -> Path:
        return self.reports_dir / "validation.json"

    @property
    def data_docs_dir(self) -> Path:
        return self.reports_dir / "data_docs"

    @property
    def data_docs_index(self) -> Path:
        return self.data_docs_dir / "index.html"

    @property
    def failed_validation_dir(self) -> Path:
        """The last failed validation's report and Data Docs, laid out as validation_file and data_docs_dir."""
        return self.reports_dir / "failed_validation"

    @property
    def drift_file(self) -> Path:
        """The drift stage's comparison of the data with the champion's (git-tracked report)."""
        return self.reports_dir / "drift.json"

    @property
    def data_profile_file(self) -> Path:
        """The data's histograms (tasks/lib/data_profile.py); promote stores them with a new champion."""
        return self.reports_dir / "data_profile.json"

    @property
    def training_history_file(self) -> Path:
        return self.reports_dir / "training_history.csv"

    @property
    def training_summary_file(self) -> Path:
        return self.reports_dir / "training.json"

    @property
    def training_metrics_file(self) -> Path:
        """Validation figures only: what a sweep ranks trials by (tasks/lib/outputs.py: TrainingMetrics)."""
        return self.reports_dir / "training_metrics.json"

    @property
    def metrics_file(self) -> Path:
        return self.reports_dir / "metrics.json"

    @property
    def class_scores_file(self) -> Path:
        return self.reports_dir / "class_scores.json"

    @property
    def predictions_file(self) -> Path:
        return self.reports_dir / "predictions.csv"

    @property
    def test_predictions_file(self) -> Path:
        return self.reports_dir / "test_predictions.npz"

    @property
    def confusion_matrix_png(self) -> Path:
        return self.reports_dir / "confusion_matrix.png"

    @property
    def misclassified_png(self) -> Path:
        return self.reports_dir / "misclassified.png"

    @property
    def promotion_file(self) -> Path:
        return self.reports_dir / "promotion.json"

    @property
    def report_file(self) -> Path:
        """The run report page: one self-contained HTML file (images inlined)."""
        return self.reports_dir / "index.html"

    @property
    def timings_dir(self) -> Path:
        """Wall time per stage (local state, not versioned: it differs run to run)."""
        return self.reports_dir / "timings"

    def stage_timing_file(self, stage: str) -> Path:
        return self.timings_dir / f"{stage}.json"

    @property
    def run_log_file(self) -> Path:
        """The report page's run log: when, wall times, history (local state, not versioned: tasks/lib/run_log.py)."""
        return self.reports_dir / "run_log.js"

    @property
    def train_backup_dir(self) -> Path:
        """Keras' BackupAndRestore state of an interrupted training run (local scratch, not versioned)."""
        return self.model_dir / ".train_backup"

    @property
    def lock_file(self) -> Path:
        """Held by the run of this dataset's pipeline in progress (tasks/common/lock.py), beside DVC's own lock."""
        return self.root / ".dvc" / "tmp" / f"pipeline-{self.dataset}.lock"

    @property
    def last_run_file(self) -> Path:
        """Which flow run last completed for this dataset (local state, not versioned)."""
        return self.reports_dir / "last_run.json"
