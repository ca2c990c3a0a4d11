"""Stage 4, drift: is the data like the data the champion learned from?

The dataset as it is now (the base plus every ingested drop) is profiled (tasks/lib/data_profile.py) and compared
with the profile stored beside the champion, `models/<dataset>/production/data_profile.json`: the label distribution
of each split by Jensen-Shannon distance, each image's mean intensity and ink area by PSI, and what the new images
show (those of the parts the champion's profile does not hold) against the images it was made from, by a classifier
two-sample test (tasks/lib/two_sample.py), against the thresholds under `drift` in params.yaml. The profile goes to
`reports/<dataset>/data_profile.json`, which promote stores with the next champion; the comparison goes to
`reports/<dataset>/drift.json` and the report page.

`drift.action: warn` trains anyway; `block` stops here, after ingest has versioned the data, with a message naming
each measure, its value and its threshold. A person accepts a drift with `make accept-drift DATASET=... REASON=...`
(`accept_drift`): the data as it is then becomes a second reference, so the next run trains, and later drops that
look like it pass too.

The champion's profile is read without being a dependency in dvc.yaml: it is an output of promote, further down the
pipeline, and DVC refuses cycles. The comparison is made when the data, the thresholds or an acceptance change;
a new champion alone does not make it run again.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import numpy as np

from tasks.common.config import DatasetParams, DriftParams
from tasks.common.errors import ConfigError, DriftBlockedError
from tasks.common.paths import SPLITS, DatasetPaths
from tasks.lib.data_profile import DataProfile, compare_profiles, describe_row, profile_parts, profile_problem
from tasks.lib.geometry import IMAGE_SIDE
from tasks.lib.two_sample import TwoSample, classifier_two_sample
from tasks.lib.drops import describe_version, ensure_drift_acceptance_dir, part_folders, read_part
from tasks.lib.outputs import DriftReport, write_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftAcceptance:
    """data/drift/<dataset>/accepted.json (git-tracked): who accepted which data, when and why."""

    dataset: str
    accepted_at: str
    by: str
    reason: str
    parts: list[str]
    measures: list[dict]  # the drift from the champion's data that was accepted, as measured then
    profile: dict  # the accepted data's DataProfile


def check_drift(paths: DatasetPaths, dataset: DatasetParams, settings: DriftParams) -> DriftReport:
    """Profile the data, compare it with the champion's, write both files; raise DriftBlockedError when blocked."""
    parts = _read_parts(paths)
    current = profile_parts(paths.dataset, dataset.class_names, parts)
    reference, reference_text = _reference(paths, dataset)
    measures = _compare(reference, current, parts, settings) if reference else []
    drifted = any(row["drifted"] for row in measures)
    accepted, acceptance_note = (_covering_acceptance(paths, dataset, current, parts, settings) if drifted
                                 else (None, None))
    blocked = drifted and accepted is None and settings.action == "block"
    outcome = _outcome(paths.dataset, reference_text, measures, drifted, accepted, settings.action)
    report = DriftReport(paths.dataset, settings.action, reference_text,
                         reference.part_names if reference else [], current.part_names,
                         {split: current.images(split) for split in SPLITS},
                         {split: reference.images(split) for split in SPLITS} if reference else {},
                         measures, drifted, accepted, blocked,
                         f"{outcome}. {acceptance_note}" if blocked and acceptance_note else outcome)
    write_record(paths.data_profile_file, current)
    write_record(paths.drift_file, report)
    if blocked:
        raise DriftBlockedError(report.outcome)
    logger.info("%s: %s", paths.dataset, report.outcome)
    return report


Parts = list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]]


def _read_parts(paths: DatasetPaths) -> Parts:
    """The dataset as the later stages will read it: the base, then each published drop, each split's images and
    labels."""
    return [(name, {split: read_part(folder, split) for split in SPLITS}) for name, folder in part_folders(paths)]


def _compare(reference: DataProfile, current: DataProfile, parts: Parts, settings: DriftParams) -> list[dict]:
    """The profile measures (labels, pixel statistics), then per split what the new images show: the classifier
    two-sample test of each part (drop) `reference` does not hold against the images of those it holds, one at a
    time (a drop unlike the rest is not hidden among drops like it); the row is the part told apart best, its
    p-value multiplied by the number of parts tested (Bonferroni)."""
    rows = compare_profiles(reference, current, settings)
    for split in SPLITS:
        if not reference.images(split) or not current.images(split):
            continue
        held = set(current.held_parts(reference, split))
        before = _joined([arrays[split] for name, arrays in parts if name in held])
        tested = [(name, classifier_two_sample(before, arrays[split])) for name, arrays in parts
                  if name not in held and len(arrays[split][0])]
        name, test = max(tested, key=lambda item: item[1].auc, default=("", TwoSample(0.5, 1.0, 0, 0)))
        p_value = min(1.0, test.p_value * max(len(tested), 1))
        threshold = settings.max_classifier_auc
        rows.append({"split": split, "statistic": "images", "measure": "classifier AUC", "value": round(test.auc, 6),
                     "threshold": threshold, "param": "drift.max_classifier_auc", "new_images": test.new_images,
                     "p_value": float(f"{p_value:.4g}"), "test": "Mann-Whitney", "part": name,
                     "drifted": bool(test.auc > threshold and p_value <= settings.significance_level)})
    return rows


def _joined(arrays: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not arrays:
        return np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8), np.zeros(0, np.uint8)
    return np.concatenate([images for images, _ in arrays]), np.concatenate([labels for _, labels in arrays])


def _stored_profile(document: object, dataset: DatasetParams) -> tuple[DataProfile | None, str | None]:
    """A profile read back from JSON, or why it cannot be compared (another profile version, other classes)."""
    problem = profile_problem(document, dataset.class_names)
    return (None, problem) if problem else (DataProfile(**cast(dict, document)), None)


def _reference(paths: DatasetPaths, dataset: DatasetParams) -> tuple[DataProfile | None, str]:
    if not paths.production_model_file.is_file():
        return None, "no champion yet: nothing to compare with"
    if not paths.production_profile_file.is_file():
        return None, ("the champion was promoted before data profiles were kept: nothing to compare with until the "
                      "next promotion")
    reference, problem = _stored_profile(_read_json(paths.production_profile_file), dataset)
    if problem or reference is None:
        return None, (f"the champion's data profile ({paths.production_profile_file}) {problem}: nothing to compare "
                      "with until the next promotion")
    return reference, f"the data the champion learned from ({describe_version(reference.part_names[1:])})"


def _covering_acceptance(paths: DatasetPaths, dataset: DatasetParams, current: DataProfile, parts: Parts,
                         settings: DriftParams) -> tuple[dict | None, str | None]:
    """The acceptance on file when the data now is within the thresholds of the data that was accepted; otherwise
    None, with a note saying why an acceptance on file does not cover it."""
    if not paths.drift_acceptance_file.is_file():
        return None, None
    document = _read_json(paths.drift_acceptance_file)
    fields = set(DriftAcceptance.__dataclass_fields__)
    if not isinstance(document, dict) or not fields <= set(document):
        return None, (f"The acceptance on file ({paths.drift_acceptance_file}) is not one `make accept-drift` writes "
                      f"(fields {sorted(fields)}) and was ignored")
    acceptance = DriftAcceptance(**{name: document[name] for name in fields})
    accepted, problem = _stored_profile(acceptance.profile, dataset)
    said = f"The acceptance of {acceptance.accepted_at} by {acceptance.by}"
    if problem or accepted is None:
        return None, f"{said} does not apply: its data profile {problem}"
    moved = [row for row in _compare(accepted, current, parts, settings) if row["drifted"]]
    if moved:
        return None, (f"{said} does not cover this data: it drifted from the accepted data too ("
                      + "; ".join(describe_row(row) for row in moved) + ")")
    return {"accepted_at": acceptance.accepted_at, "by": acceptance.by, "reason": acceptance.reason,
            "parts": acceptance.parts}, None


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"unreadable ({type(error).__name__}: {error})"


def _outcome(dataset: str, reference_text: str, measures: list[dict], drifted: bool, accepted: dict | None,
             action: str) -> str:
    if not measures:
        return f"no drift check: {reference_text}"
    if not drifted:
        return f"no drift from {reference_text}: every measure within its threshold"
    found = "; ".join(describe_row(row) for row in measures if row["drifted"])
    if accepted:
        return (f"drift from {reference_text} ({found}) accepted on {accepted['accepted_at']} by {accepted['by']}: "
                f"{accepted['reason']}")
    if action == "warn":
        return f"drift from {reference_text}: {found} (drift.action: warn, so training goes ahead)"
    return (f"drift from {reference_text}: {found} (drift.action: block). The data is versioned but not trained on; "
            f"to train on it, accept it with `make accept-drift DATASET={dataset} REASON='...'`, or change the "
            "thresholds under `drift` in params.yaml")


def accept_drift(paths: DatasetPaths, dataset: DatasetParams, settings: DriftParams, reason: str,
                 by: str | None = None) -> DriftAcceptance:
    """Record that the data as it is now is accepted despite its drift from the champion's data. Refused (ConfigError)
    without a reason, or when there is no drift to accept."""
    if not reason.strip():
        raise ConfigError("accept-drift needs a reason: make accept-drift DATASET=... REASON='why this data is right'")
    parts = _read_parts(paths)
    current = profile_parts(paths.dataset, dataset.class_names, parts)
    reference, reference_text = _reference(paths, dataset)
    measures = _compare(reference, current, parts, settings) if reference else []
    if not any(row["drifted"] for row in measures):
        raise ConfigError(f"{paths.dataset}: nothing to accept: the data ({describe_version(current.part_names[1:])}) "
                          f"has no drift from {reference_text}")
    acceptance = DriftAcceptance(paths.dataset, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 by or getpass.getuser(), reason.strip(), current.part_names,
                                 [row for row in measures if row["drifted"]], dataclasses.asdict(current))
    ensure_drift_acceptance_dir(paths)
    write_record(paths.drift_acceptance_file, acceptance)
    return acceptance


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("drift", argv, lambda paths, params: check_drift(
        paths, params.dataset(paths.dataset), params.drift))


if __name__ == "__main__":
    raise SystemExit(main())
