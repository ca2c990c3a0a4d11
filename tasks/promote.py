"""Stage 6, promote: the newly trained model (challenger) replaces the production model (champion) only if
it passes an absolute accuracy gate and does not regress: overall accuracy not lower by more than a margin,
and no class's recall lower by more than a margin where a one-sided paired test on that class's images, corrected
for testing every class (Holm), says the drop is real. A McNemar exact test on all the paired test-set
predictions says whether the two models differ at all.

The champion lives in `models/<dataset>/production/` (DVC-tracked, so earlier champions stay retrievable
from git history + DVC cache). Promotion swaps that folder in whole; a rejected challenger leaves it as it was.
The decision, with its numbers, goes to `reports/<dataset>/promotion.json`. A model that `make rollback` replaced
(listed in the champion's `rolled_back.json`, versioning/rollback.py) is never promoted again: training is
deterministic, so retraining it on the same data and params gives the same bytes, and those stay refused.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np

from tasks.common.config import DatasetParams, PromoteParams
from tasks.common.errors import TrainingError
from tasks.common.fileio import atomic_directory
from tasks.common.paths import DatasetPaths
from tasks.lib.inference import load_network
from tasks.lib.model_versions import file_md5
from tasks.lib.outputs import (McNemarResult, PromotionDecision, RolledBackModel, RolledBackModels, load_split,
                               read_record, write_record)
from tasks.lib.paired_tests import holm_adjusted, mcnemar_exact, worse_p_value
from tasks.lib.scores import summarize_predictions
from tasks.lib.predictions import load_model, load_predictions, predict_labels, test_set_fingerprint

logger = logging.getLogger(__name__)


def per_class_recall(labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Recall of each class 0..n-1; 0.0 for a class absent from `labels` (sklearn's zero_division=0).
    The same numbers as evaluate's per-class report, from the same function."""
    _, per_class = summarize_predictions(labels, predicted, class_names)
    return {name: scores["recall"] for name, scores in per_class.items()}


def decide(dataset: str, labels: np.ndarray, challenger_predicted: np.ndarray, champion_predicted: np.ndarray | None,
           dataset_params: DatasetParams, settings: PromoteParams,
           rolled_back: RolledBackModel | None = None) -> PromotionDecision:
    """Apply the gates to paired predictions on the same test set; `rolled_back`: the challenger is a model
    `make rollback` replaced. Pure: no files."""
    challenger_correct = challenger_predicted == labels
    challenger_accuracy = float(challenger_correct.mean())
    gates = [_gate("absolute accuracy gate", challenger_accuracy >= dataset_params.min_accuracy,
                   f"test accuracy {challenger_accuracy:.4f} vs minimum {dataset_params.min_accuracy:.4f}")]
    if rolled_back is not None:
        gates.append(_gate("not rolled back", False,
                           f"this model (md5 {rolled_back.model_md5[:8]}) was rolled back from on "
                           f"{rolled_back.rolled_back_at} by {rolled_back.by}: {rolled_back.reason}; a model "
                           "retrained on other data or params is judged afresh"))
    if champion_predicted is None:
        return _conclude(dataset, gates, challenger_accuracy, None, {}, None, "no champion yet")
    champion_correct = champion_predicted == labels
    champion_accuracy = float(champion_correct.mean())
    challenger_recall = per_class_recall(labels, challenger_predicted, dataset_params.class_names)
    champion_recall = per_class_recall(labels, champion_predicted, dataset_params.class_names)
    recall_deltas = {name: challenger_recall[name] - champion_recall[name] for name in dataset_params.class_names}
    gates.append(_gate("no accuracy regression", challenger_accuracy - champion_accuracy >= -settings.max_accuracy_drop,
                       f"accuracy {challenger_accuracy:.4f} vs champion {champion_accuracy:.4f} "
                       f"(delta {challenger_accuracy - champion_accuracy:+.4f}, "
                       f"allowed drop {settings.max_accuracy_drop})"))
    gates.append(_class_gate(labels, champion_correct, challenger_correct, recall_deltas, dataset_params.class_names,
                             settings))
    test = mcnemar_exact(champion_correct, challenger_correct, settings.significance_level)
    return _conclude(dataset, gates, challenger_accuracy, champion_accuracy, recall_deltas, test,
                     _significance_note(test, settings.significance_level))


def _class_gate(labels, champion_correct, challenger_correct, recall_deltas: dict[str, float],
                class_names: tuple[str, ...], settings: PromoteParams) -> dict:
    """A class regresses when its recall drops by more than the allowed drop AND a one-sided paired test on its
    own images says the challenger is really worse there, Holm-corrected over the classes: a drop of a few
    images in a small class is noise, not a regression."""
    worse = {name: worse_p_value(champion_correct[labels == index], challenger_correct[labels == index])
             for index, name in enumerate(class_names)}
    adjusted = holm_adjusted(worse)
    regressed = [name for name in class_names
                 if recall_deltas[name] < -settings.max_recall_drop and adjusted[name] <= settings.significance_level]
    shown = regressed or [min(recall_deltas, key=lambda name: recall_deltas[name])]
    details = [f"{'recall drop' if regressed else 'largest recall drop'} {recall_deltas[name]:+.4f} for {name!r} "
               f"(allowed drop {settings.max_recall_drop}; one-sided paired test on its "
               f"{int(np.sum(labels == class_names.index(name)))} images p = {worse[name]:.4g}, Holm-adjusted over "
               f"{len(class_names)} classes {adjusted[name]:.4g}, "
               f"{'significant' if adjusted[name] <= settings.significance_level else 'not significant'} at "
               f"{settings.significance_level})" for name in shown]
    return _gate("no per-class recall regression", not regressed, "; ".join(details))


def _gate(name: str, passed: bool, detail: str) -> dict:
    return {"gate": name, "passed": bool(passed), "detail": detail}


def _significance_note(test: McNemarResult, level: float) -> str:
    verdict = "significant" if test.significant else "not significant"
    return (f"McNemar: champion-only correct {test.champion_only_correct}, challenger-only correct "
            f"{test.challenger_only_correct}, p = {test.p_value:.4g} ({verdict} at {level})")


def _conclude(dataset, gates, challenger_accuracy, champion_accuracy, recall_deltas, test, note) -> PromotionDecision:
    failed = [gate for gate in gates if not gate["passed"]]
    if failed:
        reason = "rejected: " + "; ".join(f"{gate['gate']} failed ({gate['detail']})" for gate in failed)
    else:
        reason = "promoted: every gate passed"
    delta = None if champion_accuracy is None else challenger_accuracy - champion_accuracy
    return PromotionDecision(dataset, not failed, f"{reason}; {note}", challenger_accuracy, champion_accuracy, delta,
                             recall_deltas, gates, test)


def promote_model(paths: DatasetPaths, dataset_params: DatasetParams, settings: PromoteParams) -> PromotionDecision:
    """Compare the evaluated model with the champion on the test set; swap it in if it wins."""
    images, labels = load_split(paths.processed_file("test"))
    fingerprint = test_set_fingerprint(images, labels)
    challenger_predicted = load_predictions(paths.test_predictions_file, fingerprint)
    if challenger_predicted is None:
        raise TrainingError(f"{paths.test_predictions_file}: missing or made on another test set; "
                            "run the evaluate stage first")
    if not paths.data_profile_file.is_file():  # stored with a new champion: the next drift check's reference
        raise TrainingError(f"{paths.data_profile_file}: missing; run the drift stage first")
    champion_predicted = _champion_predictions(paths, images, fingerprint)
    rollbacks = (read_record(paths.production_rollbacks_file, RolledBackModels)
                 if paths.production_rollbacks_file.is_file() else None)
    decision = decide(paths.dataset, labels, challenger_predicted, champion_predicted, dataset_params, settings,
                      rollbacks.find(file_md5(paths.model_file)) if rollbacks else None)
    if decision.promoted or not paths.production_dir.exists():
        # A rejected first model still gets the folder (a DVC output), holding only the decision, so that
        # `dvc repro` and the flow's `dvc commit` record the state "no champion".
        copies = paths.production_copies() if decision.promoted else {}
        if rollbacks:  # the models rolled back from stay refused, champion after champion
            copies[paths.production_rollbacks_file] = paths.production_rollbacks_file
        with atomic_directory(paths.production_dir) as staging_dir:
            for source, destination in copies.items():
                shutil.copy2(source, staging_dir / destination.relative_to(paths.production_dir))
            write_record(staging_dir / paths.production_promotion_file.relative_to(paths.production_dir), decision)
    write_record(paths.promotion_file, decision)
    logger.info("%s: %s", paths.dataset, decision.reason)
    return decision


def _champion_predictions(paths: DatasetPaths, images: np.ndarray, fingerprint: str) -> np.ndarray | None:
    """The champion's saved predictions if they belong to this test set; else predict with the champion."""
    saved = load_predictions(paths.production_predictions_file, fingerprint)
    if saved is not None or not paths.production_model_file.exists():
        return saved
    logger.info("%s: test set changed since the champion was promoted; predicting with it again", paths.dataset)
    if paths.production_runtime_model_file.exists():
        return predict_labels(load_network(paths.production_runtime_model_file), images)
    # a champion promoted before the train stage exported models for ONNX Runtime: Keras runs it (safe mode)
    return predict_labels(load_model(paths.production_model_file), images)


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("promote", argv, lambda paths, params: promote_model(
        paths, params.dataset(paths.dataset), params.promote))


if __name__ == "__main__":
    raise SystemExit(main())
