"""Labels the champion disputes in a drop: new labelled images whose folder (the label a person gave) the champion,
which never trained on them, does not believe.

cleanlab's `find_label_issues` (confident learning, Northcutt et al. 2021) finds them from the champion's
out-of-sample probabilities. Confident learning counts an image as confidently of class k when the champion gives k
at least the class's threshold, the average probability it gives k over the drop's images labelled k; from those
counts it estimates how many labels are wrong. Which images are flagged is FILTER:
- cleanlab's default, `prune_by_noise_rate`, flags only images confidently of another class. The thresholds come
  from the drop itself, and for an easy class they are high: in a drop of 80 real Fashion-MNIST images a bag filed
  as a dress, given 0.90 as a bag by the champion, was not flagged, the bags' threshold being 0.99;
- `low_self_confidence` (cleanlab's too) flags as many images as confident learning estimates are wrong, those with
  the lowest self-confidence (the probability the champion gives their label): both planted errors of that drop
  ranked first. A drop of new data is often small, so this one.
The suspects are ranked by self-confidence, lowest first. A simple baseline, "the champion's top class is not the
label", flags every mistake of the champion too; `make bench-gates` (target 17) sets them side by side on planted
label errors.

cleanlab warns when a class has few images in the drop; the warnings are gathered into one log line here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)
FILTER = "low_self_confidence"


@dataclass(frozen=True)
class Suspect:
    row: int  # in the images given
    label: int
    suggested: int  # the champion's top class
    self_confidence: float  # the champion's probability of the label


def disputed_labels(probabilities: np.ndarray, labels: np.ndarray, method: str = FILTER) -> list[Suspect] | None:
    """The suspects among (n, classes) `probabilities` of images labelled `labels`, lowest self-confidence first
    (`method`: cleanlab's `filter_by`). Confident learning compares classes: a drop of one class is not judged (None),
    and the caller says so."""
    if len(np.unique(labels)) < 2:
        return None
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = find_label_issues(labels.astype(np.int64), probabilities.astype(np.float64), filter_by=method,
                                 return_indices_ranked_by="self_confidence")
    if caught:
        logger.info("cleanlab: %d warning(s), e.g. %s", len(caught), " ".join(str(caught[0].message).split()))
    return [Suspect(int(row), int(labels[row]), int(np.argmax(probabilities[row])),
                    float(probabilities[row, labels[row]])) for row in rows]


def baseline_disputes(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The simple baseline's suspects: the rows whose top class is not their label."""
    return np.flatnonzero(probabilities.argmax(axis=1) != labels)
