"""Prefect artifacts with stable keys, so each dataset's results version across runs in the UI."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.evaluate import EvaluationResult
from tasks.paths import DatasetPaths
from tasks.train import TrainResult


def artifact_key(dataset: str, kind: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return "".join(ch if ch.isalnum() else "-" for ch in f"{dataset}-{kind}".lower())


def publish_results(paths: DatasetPaths, class_names: tuple[str, ...], training: TrainResult,
                    evaluation: EvaluationResult) -> None:
    create_markdown_artifact(key=artifact_key(paths.dataset, "metrics"),
                             markdown=metrics_markdown(paths, class_names, training, evaluation),
                             description=f"Test metrics and confusion matrix of {paths.dataset}")
    rows = [{"class": name, **{metric: round(value, 4) for metric, value in scores.items()}}
            for name, scores in evaluation.per_class.items()]
    create_table_artifact(key=artifact_key(paths.dataset, "per-class"), table=rows,
                          description=f"Per-class precision, recall and F1 of {paths.dataset}")


def metrics_markdown(paths: DatasetPaths, class_names: tuple[str, ...], training: TrainResult,
                     evaluation: EvaluationResult) -> str:
    header = "| true \\ predicted | " + " | ".join(class_names) + " |"
    divider = "|---" * (len(class_names) + 1) + "|"
    body = [f"| **{name}** | " + " | ".join(str(count) for count in row) + " |"
            for name, row in zip(class_names, evaluation.confusion_matrix)]
    return "\n".join([
        f"# {paths.dataset}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {evaluation.test_accuracy:.4f} |",
        f"| test loss | {evaluation.test_loss:.4f} |",
        f"| stop epoch | {training.stop_epoch} ({'threshold reached' if training.stopped_by_threshold else 'epoch limit'}) |",
        f"| training time | {training.train_seconds:.1f} s |",
        "",
        "## Confusion matrix (test set)",
        "",
        header,
        divider,
        *body,
        "",
        f"Model: `{paths.model_file}` · metrics: `{paths.metrics_file}` · heatmap: `{paths.confusion_matrix_png}`",
    ])
