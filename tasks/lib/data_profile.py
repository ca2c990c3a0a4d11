"""What a dataset looks like, in a few histograms, and how far two datasets lie apart (the drift stage).

A profile holds, per part of the dataset (the downloaded base, then each ingested drop) and per split:
- the label counts;
- a histogram of each image's mean intensity (0 = black, 1 = white);
- a histogram of each image's ink area (the share of its pixels at half intensity or more).

Histograms over fixed bins add up, so the whole dataset's profile is the sum of its parts, and the profile of the
data a champion learned from (stored beside it) can be compared with today's data without reading that data again.

Two measures of how far the whole dataset moved, as the field uses them (TFX's DistributionValidator, Evidently):
- labels: the Jensen-Shannon distance (base 2: 0 for the same distribution, 1 for disjoint ones). It stays finite
  when a class appears that the reference never had, where PSI would divide by zero;
- pixel statistics: the population stability index over the reference's deciles (the fine bins merged so that each
  holds about a tenth of the reference), empty bins floored at 1e-4 as Evidently does (PSI < 0.1 is read as no
  shift, 0.1-0.25 as moderate, > 0.25 as large).

Both measures are noisy on small data: two halves of 40 Fashion-MNIST test images lie a PSI of 0.76 apart over 50
bins. So a measure over its threshold is drift only when the images added since the reference also differ from it
significantly: a chi-square test of homogeneity between the reference's counts and the new images' counts (the data
is append-only, so the new images are the current counts minus the reference's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from tasks.common.paths import SPLITS

PROFILE_VERSION = 1
BINS = 50  # over [0, 1]: 0.02 wide, fine enough for MNIST's narrow range of mean intensities (about 0.05-0.25)
INK_LEVEL = 128  # a pixel is ink at half intensity or more (every dataset is bright objects on black)
PIXEL_STATISTICS = ("mean_intensity", "ink_area")
_EMPTY_BIN_SHARE = 1e-4
PSI_GROUPS = 10  # the reference's deciles


@dataclass(frozen=True)
class DataProfile:
    """A dataset's histograms. `parts`: [{"part": "base" or a drop id, "splits": {split: SplitProfile dict}}]; a
    split profile has `images`, `labels` (counts per class) and one histogram per PIXEL_STATISTICS name."""

    dataset: str
    profile_version: int
    class_names: list[str]
    bins: int
    parts: list[dict]

    @property
    def part_names(self) -> list[str]:
        return [part["part"] for part in self.parts]

    def totals(self, split: str) -> dict[str, np.ndarray]:
        """The whole dataset's counts for `split`: labels and each pixel histogram, summed over the parts."""
        names = ("labels", *PIXEL_STATISTICS)
        return {name: np.sum([np.asarray(part["splits"][split][name], dtype=np.int64) for part in self.parts], axis=0)
                for name in names}

    def images(self, split: str) -> int:
        return sum(part["splits"][split]["images"] for part in self.parts)


def split_profile(images: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """One part's split: label counts and the two pixel histograms, from uint8 images of shape (n, 28, 28)."""
    flat = images.reshape(len(images), int(np.prod(images.shape[1:])))  # -1 cannot size an empty split
    statistics = {"mean_intensity": flat.mean(axis=1) / 255.0,
                  "ink_area": np.count_nonzero(flat >= INK_LEVEL, axis=1) / max(flat.shape[1], 1)}
    profile = {"images": int(len(images)),
               "labels": np.bincount(labels, minlength=num_classes)[:num_classes].astype(int).tolist()}
    for name, values in statistics.items():
        profile[name] = np.histogram(values, bins=BINS, range=(0.0, 1.0))[0].astype(int).tolist()
    return profile


def profile_parts(dataset: str, class_names: tuple[str, ...],
                  parts: list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]]) -> DataProfile:
    """The profile of `parts`: (part name, {split: (uint8 images, labels)}), in the dataset's order."""
    return DataProfile(dataset, PROFILE_VERSION, list(class_names), BINS,
                       [{"part": name, "splits": {split: split_profile(*arrays[split], len(class_names))
                                                  for split in SPLITS}} for name, arrays in parts])


def decile_groups(reference: np.ndarray) -> np.ndarray:
    """For each fine bin, the group it joins: groups hold about a tenth of the reference each (a bin holding more
    than a tenth makes a group of its own). Empty leading or trailing bins join the first or last group."""
    before = (np.cumsum(reference) - reference) / max(reference.sum(), 1)  # the reference's share below each bin
    return np.minimum(np.floor(before * PSI_GROUPS + 1e-9), PSI_GROUPS - 1).astype(int)


def regroup(counts: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.bincount(groups, weights=counts, minlength=PSI_GROUPS).astype(np.int64)


def population_stability_index(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI = sum((current - reference) * ln(current / reference)) over the bins' shares."""
    expected = np.maximum(reference / max(reference.sum(), 1), _EMPTY_BIN_SHARE)
    actual = np.maximum(current / max(current.sum(), 1), _EMPTY_BIN_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def jensen_shannon_distance(reference: np.ndarray, current: np.ndarray) -> float:
    return float(jensenshannon(reference.astype(float), current.astype(float), base=2))


def homogeneity_p_value(reference: np.ndarray, new: np.ndarray) -> float:
    """Chi-square test that the new counts come from the reference's distribution (1.0 when nothing is new)."""
    table = np.vstack([reference, new])
    table = table[:, table.sum(axis=0) > 0]
    if new.sum() == 0 or reference.sum() == 0 or table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table).pvalue)


@dataclass(frozen=True)
class Thresholds:
    """The largest value of each measure that is not drift, and the significance the new images' difference needs
    (drift.* in params.yaml)."""

    label_js_distance: float
    pixel_psi: float
    significance_level: float


def compare_profiles(reference: DataProfile, current: DataProfile, thresholds: Thresholds) -> list[dict]:
    """One row per split and statistic: {split, statistic, measure, value, threshold, new_images, p_value, drifted}.
    A split that is empty on either side has nothing to compare and gets no row."""
    appended = current.part_names[:len(reference.parts)] == reference.part_names
    rows = []
    for split in SPLITS:
        if not reference.images(split) or not current.images(split):
            continue
        before, after = reference.totals(split), current.totals(split)
        # Append-only: what the reference lacks is the new images. Otherwise (the data was rebuilt) all of it is.
        new = {name: after[name] - before[name] for name in after}
        if not appended or any((counts < 0).any() for counts in new.values()):
            new = after
        new_images = int(new["labels"].sum())
        value = jensen_shannon_distance(before["labels"], after["labels"])
        rows.append(_row(split, "labels", "Jensen-Shannon distance", value, thresholds.label_js_distance, new_images,
                         homogeneity_p_value(before["labels"], new["labels"]), thresholds.significance_level))
        for statistic in PIXEL_STATISTICS:
            groups = decile_groups(before[statistic])
            reference_groups = regroup(before[statistic], groups)
            value = population_stability_index(reference_groups, regroup(after[statistic], groups))
            p_value = homogeneity_p_value(reference_groups, regroup(new[statistic], groups))
            rows.append(_row(split, statistic, "PSI", value, thresholds.pixel_psi, new_images, p_value,
                             thresholds.significance_level))
    return rows


def _row(split: str, statistic: str, measure: str, value: float, threshold: float, new_images: int, p_value: float,
         level: float) -> dict:
    return {"split": split, "statistic": statistic, "measure": measure, "value": round(value, 6),
            "threshold": threshold, "new_images": new_images, "p_value": float(f"{p_value:.4g}"),
            "drifted": bool(value > threshold and p_value <= level)}


def describe_row(row: dict) -> str:
    """`train labels: Jensen-Shannon distance 0.2311 > threshold 0.1 (500 new images, chi-square p = 1.2e-40)`."""
    relation = ">" if row["value"] > row["threshold"] else "<="
    return (f"{row['split']} {row['statistic'].replace('_', ' ')}: {row['measure']} {row['value']:.4f} {relation} "
            f"threshold {row['threshold']:g} ({row['new_images']} new images, chi-square p = {row['p_value']:.3g})")
