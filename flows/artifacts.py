"""Prefect artifacts with stable keys, so each dataset's results version across runs in the UI."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.evaluate import EvaluationResult
from flows.versioning import locked_output_hash
from tasks.paths import DatasetPaths
from tasks.promote import PromotionDecision
from tasks.train import TrainResult


def artifact_key(dataset: str, kind: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return "".join(ch if ch.isalnum() else "-" for ch in f"{dataset}-{kind}".lower())


def publish_results(paths: DatasetPaths, class_names: tuple[str, ...], training: TrainResult,
                    evaluation: EvaluationResult, decision: PromotionDecision) -> None:
    create_markdown_artifact(key=artifact_key(paths.dataset, "decision"), markdown=decision_markdown(paths, decision),
                             description=f"Whether this run's model became {paths.dataset}'s production model")
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


def decision_markdown(paths: DatasetPaths, decision: PromotionDecision) -> str:
    champion = "none" if decision.champion_accuracy is None else f"{decision.champion_accuracy:.4f}"
    lines = [
        f"# {paths.dataset}: {'promoted' if decision.promoted else 'champion kept'}",
        "",
        decision.reason,
        "",
        "| gate | passed | detail |",
        "|---|---|---|",
        *[f"| {gate['gate']} | {'yes' if gate['passed'] else '**no**'} | {gate['detail']} |" for gate in decision.gates],
        "",
        f"Challenger accuracy {decision.challenger_accuracy:.4f}, champion accuracy {champion}.",
    ]
    if decision.recall_deltas:
        lines += ["", "| class | recall delta (challenger - champion) |", "|---|---|"]
        lines += [f"| {name} | {delta:+.4f} |" for name, delta in decision.recall_deltas.items()]
    lines += ["", f"Production model: `{paths.production_model_file}`; decision: `{paths.promotion_file}`"]
    return "\n".join(lines)


def publish_skip(paths: DatasetPaths, last_run: dict | None) -> str:
    """Say, in the log and a markdown artifact, that nothing changed and which model stays in production."""
    model_hash = locked_output_hash(paths.root, "promote", paths.dataset)
    since = (f"run {last_run['flow_run_name']} ({last_run['finished_at']})" if last_run
             else "the state recorded in dvc.lock")
    message = (f"{paths.dataset}: nothing changed since {since} (data, params and code match dvc.lock); "
               f"training skipped, model {paths.production_model_file} (md5 {model_hash}) kept")
    create_markdown_artifact(key=artifact_key(paths.dataset, "decision"),
                             markdown=f"# {paths.dataset}: skipped\n\n{message}. Run with `force=True` to retrain.",
                             description=f"Whether this run retrained {paths.dataset}")
    return message
