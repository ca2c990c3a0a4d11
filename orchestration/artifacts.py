"""Prefect artifacts with stable keys, so each dataset's results version across runs in the UI."""

from __future__ import annotations

import base64
from uuid import UUID

from prefect.artifacts import (create_image_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)

from versioning.dvc_state import locked_output_hash
from tasks.common.paths import DatasetPaths
from tasks.lib.outputs import DriftReport, Evaluation, Metrics, PromotionDecision, read_record
from tasks.train import TrainResult


def artifact_key(dataset: str, kind: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return "".join(ch if ch.isalnum() else "-" for ch in f"{dataset}-{kind}".lower())


def publish_results(paths: DatasetPaths, class_names: tuple[str, ...], training: TrainResult,
                    evaluation: Evaluation, decision: PromotionDecision) -> None:
    create_markdown_artifact(key=artifact_key(paths.dataset, "decision"), markdown=decision_markdown(paths, decision),
                             description=f"Whether this run's model became {paths.dataset}'s production model")
    create_markdown_artifact(key=artifact_key(paths.dataset, "metrics"),
                             markdown=metrics_markdown(paths, class_names, training, evaluation),
                             description=f"Test metrics and confusion matrix of {paths.dataset}")
    rows = [{"class": name, **{metric: round(value, 4) for metric, value in scores.items()}}
            for name, scores in evaluation.class_scores.per_class.items()]
    create_table_artifact(key=artifact_key(paths.dataset, "per-class"), table=rows,
                          description=f"Per-class precision, recall and F1 of {paths.dataset}")


def metrics_markdown(paths: DatasetPaths, class_names: tuple[str, ...], training: TrainResult,
                     evaluation: Evaluation) -> str:
    header = "| true \\ predicted | " + " | ".join(class_names) + " |"
    divider = "|---" * (len(class_names) + 1) + "|"
    body = [f"| **{name}** | " + " | ".join(str(count) for count in row) + " |"
            for name, row in zip(class_names, evaluation.class_scores.confusion_matrix)]
    return "\n".join([
        f"# {paths.dataset}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {evaluation.metrics.test_accuracy:.4f} |",
        f"| test loss | {evaluation.metrics.test_loss:.4f} |",
        f"| stop epoch | {training.summary.stop_epoch} "
        f"({'threshold reached' if training.summary.stopped_by_threshold else 'epoch limit'}) |",
        f"| training time | {training.train_seconds:.1f} s |",
        "",
        "## Confusion matrix (test set)",
        "",
        header,
        divider,
        *body,
        "",
        f"Model: `{paths.model_file}` · metrics: `{paths.metrics_file}` · heatmap: `{paths.confusion_matrix_png}`",
        "",
        f"Run report: [{paths.report_file}]({paths.report_file.as_uri()})",
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
        *[f"| {gate['gate']} | {'yes' if gate['passed'] else '**no**'} | {gate['detail']} |"
          for gate in decision.gates],
        "",
        f"Challenger accuracy {decision.challenger_accuracy:.4f}, champion accuracy {champion}.",
    ]
    if decision.recall_deltas:
        lines += ["", "| class | recall delta (challenger - champion) |", "|---|---|"]
        lines += [f"| {name} | {delta:+.4f} |" for name, delta in decision.recall_deltas.items()]
    lines += ["", f"Production model: `{paths.production_model_file}`; decision: `{paths.promotion_file}`"]
    return "\n".join(lines)


def publish_drift(paths: DatasetPaths) -> None:
    """The drift stage's comparison (reports/<dataset>/drift.json) as a markdown artifact."""
    report = read_record(paths.drift_file, DriftReport)
    create_markdown_artifact(key=artifact_key(paths.dataset, "drift"), markdown=drift_markdown(report),
                             description=f"Whether {paths.dataset}'s data drifted from what the champion learned from")


def drift_markdown(report: DriftReport) -> str:
    if report.blocked:
        verdict = "drift, training BLOCKED"
    elif report.accepted:
        verdict = "drift, accepted"
    elif report.drifted:
        verdict = "drift (warning)"
    else:
        verdict = "no drift" if report.measures else "not checked"
    images = ", ".join(f"{split} {count}" for split, count in report.images.items())
    reference = ", ".join(f"{split} {count}" for split, count in report.reference_images.items()) or "none"
    lines = [f"# {report.dataset}: {verdict}", "", report.outcome, "",
             f"Images now: {images}; in the champion's data: {reference} (drift.action: {report.action}).", ""]
    if report.measures:
        lines += ["| split | statistic | measure | value | threshold | drift |", "|---|---|---|---|---|---|"]
        lines += [f"| {row['split']} | {row['statistic'].replace('_', ' ')} | {row['measure']} | {row['value']:.4f} | "
                  f"{row['threshold']:g} | {'**yes**' if row['drifted'] else 'no'} |" for row in report.measures]
    return "\n".join(lines)


def publish_skip(paths: DatasetPaths, last_run: dict | None, refused: str = "") -> str:
    """Say, in the log and a markdown artifact, that nothing changed and which model stays in production;
    `refused`, when the inbox's new files were all refused, says so first."""
    model_hash = locked_output_hash(paths.root, "promote", paths.dataset)
    since = (f"run {last_run['flow_run_name']} ({last_run['finished_at']})" if last_run
             else "the state recorded in dvc.lock")
    message = (f"{paths.dataset}: {refused + '; ' if refused else ''}nothing changed since {since} (data, params "
               f"and code match dvc.lock); training skipped, model {paths.production_model_file} (md5 {model_hash}) "
               f"kept")
    create_markdown_artifact(key=artifact_key(paths.dataset, "decision"),
                             markdown=f"# {paths.dataset}: skipped\n\n{message}. Run with `force=True` to retrain.",
                             description=f"Whether this run retrained {paths.dataset}")
    return message


class TrainingProgress:
    """A progress artifact (`<dataset>-training-progress`) moved on at the end of every epoch."""

    def __init__(self, dataset: str, epochs: int) -> None:
        self.epochs = epochs
        self.artifact_id: UUID = create_progress_artifact(  # type: ignore[assignment]  # sync here, not a coroutine
            0.0, key=artifact_key(dataset, "training-progress"),
            description=f"Training {dataset}: epoch 0 of at most {epochs}")

    def callback(self):
        """A Keras callback reporting each finished epoch (Keras' own generic LambdaCallback)."""
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_end=self.epoch_done)

    def epoch_done(self, epoch: int, logs: dict | None = None) -> None:
        update_progress_artifact(self.artifact_id, progress=epoch_progress(epoch + 1, self.epochs),
                                 description=epoch_description(epoch + 1, self.epochs, logs or {}))

    def finish(self, stop_epoch: int, stopped_by_threshold: bool) -> None:
        """Training is over, possibly before the epoch limit: 100 %, saying why it stopped."""
        why = "threshold reached" if stopped_by_threshold else "epoch limit"
        update_progress_artifact(self.artifact_id, progress=100.0,
                                 description=f"Done: stopped after epoch {stop_epoch} of at most {self.epochs} ({why})")


def training_progress(dataset: str, epochs: int) -> TrainingProgress:
    return TrainingProgress(dataset, epochs)


def epoch_progress(epochs_done: int, epochs: int) -> float:
    return round(min(100.0, 100.0 * epochs_done / epochs), 1)


def epoch_description(epochs_done: int, epochs: int, logs: dict) -> str:
    shown = ", ".join(f"{name} {float(value):.4f}" for name, value in sorted(logs.items()))
    return f"epoch {epochs_done} of at most {epochs}" + (f": {shown}" if shown else "")


def publish_report(paths: DatasetPaths, class_names: tuple[str, ...]) -> None:
    """Link the run report and show the confusion-matrix heatmap (inlined, so no file server is needed)."""
    metrics = read_record(paths.metrics_file, Metrics)
    create_markdown_artifact(key=artifact_key(paths.dataset, "report"), markdown=report_markdown(paths, metrics),
                             description=f"Where {paths.dataset}'s run report is")
    heatmap = base64.b64encode(paths.confusion_matrix_png.read_bytes()).decode("ascii")
    create_image_artifact(image_url=f"data:image/png;base64,{heatmap}", key=artifact_key(paths.dataset, "confusion"),
                          description=f"Confusion matrix of {paths.dataset} on the test set "
                                      f"(rows: true class, columns: predicted; classes {', '.join(class_names)})")


def report_markdown(paths: DatasetPaths, metrics: Metrics) -> str:
    promotion = read_record(paths.promotion_file, PromotionDecision) if paths.promotion_file.exists() else None
    decision = "no decision" if promotion is None else ("promoted" if promotion.promoted else "champion kept")
    return "\n".join([
        f"# {paths.dataset}: run report",
        "",
        f"**[Open the run report]({paths.report_file.as_uri()})**: `{paths.report_file}`",
        "",
        "One self-contained page: headline metrics and promotion decision, confusion matrices, per-class scores, "
        "training curves, the most confident mistakes, data validation and a run card. Browsers may refuse "
        "`file://` links from a web page: open the path above directly.",
        "",
        f"Test accuracy {metrics.test_accuracy:.4f}, test loss {metrics.test_loss:.4f}, "
        f"stopped at epoch {metrics.stop_epoch}; promotion: {decision}.",
    ])
