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
  holds about a tenth of the reference; values below or above everything the reference holds get a group each),
  empty groups floored at 1e-4 as Evidently does (PSI < 0.1 is read as no shift, 0.1-0.25 as moderate, > 0.25 as
  large).

Both measures are noisy on small data: two halves of 40 Fashion-MNIST test images lie a PSI of 0.76 apart over 50
bins. So a measure over its threshold is drift only when the images added since the reference also differ from it
significantly: a chi-square test of homogeneity between the reference's counts and the new images' counts. The new
images are the parts (drops) the reference does not hold, or holds with other contents (a drop rebuilt from its
original files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.common.config import DriftParams
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
        return _summed(self.parts, split, len(self.class_names), self.bins)

    def images(self, split: str) -> int:
        return sum(part["splits"][split]["images"] for part in self.parts)

    def held_parts(self, reference: DataProfile, split: str) -> list[str]:
        """The parts whose `split` `reference` holds as it is now: the data it was made from."""
        held = {part["part"]: part["splits"][split] for part in reference.parts}
        return [part["part"] for part in self.parts if held.get(part["part"]) == part["splits"][split]]

    def new_since(self, reference: DataProfile, split: str) -> dict[str, np.ndarray]:
        """The counts of the parts that `reference` does not hold as they are now (zeros when there are none)."""
        held = set(self.held_parts(reference, split))
        new = [part for part in self.parts if part["part"] not in held]
        return _summed(new, split, len(self.class_names), self.bins)


def _summed(parts: list[dict], split: str, num_classes: int, bins: int) -> dict[str, np.ndarray]:
    sizes = {"labels": num_classes, **{name: bins for name in PIXEL_STATISTICS}}
    return {name: np.sum([np.asarray(part["splits"][split][name], dtype=np.int64) for part in parts], axis=0)
            if parts else np.zeros(size, dtype=np.int64) for name, size in sizes.items()}


def profile_problem(document: object, class_names: tuple[str, ...]) -> str | None:
    """Why a stored profile (parsed JSON) cannot be compared with this pipeline's, or None when it can."""
    if not isinstance(document, dict):
        return f"is not a JSON object (found {type(document).__name__})"
    if (document.get("profile_version"), document.get("bins")) != (PROFILE_VERSION, BINS):
        return (f"has profile version {document.get('profile_version')!r} with {document.get('bins')!r} bins, where "
                f"version {PROFILE_VERSION} with {BINS} bins is read")
    if tuple(document.get("class_names") or ()) != tuple(class_names):
        return f"has classes {document.get('class_names')}, not {list(class_names)}"
    if set(document) != set(DataProfile.__dataclass_fields__) or not isinstance(document.get("parts"), list):
        return f"has fields {sorted(document)}, where {sorted(DataProfile.__dataclass_fields__)} are read"
    return None


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
    """For each fine bin, the group it joins: groups 1..10 hold about a tenth of the reference each (a bin holding
    more than a tenth makes a group of its own); group 0 holds the bins below the reference's lowest value, group 11
    those above its highest, so a move outside what the reference ever held always shows."""
    before = (np.cumsum(reference) - reference) / max(reference.sum(), 1)  # the reference's share below each bin
    groups = 1 + np.minimum(np.floor(before * PSI_GROUPS + 1e-9), PSI_GROUPS - 1).astype(int)
    held = np.flatnonzero(reference)
    if held.size:
        groups[:held[0]] = 0
        groups[held[-1] + 1:] = PSI_GROUPS + 1
    return groups


def regroup(counts: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.bincount(groups, weights=counts, minlength=PSI_GROUPS + 2).astype(np.int64)


def population_stability_index(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI = sum((current - reference) * ln(current / reference)) over the bins' shares."""
    expected = np.maximum(reference / max(reference.sum(), 1), _EMPTY_BIN_SHARE)
    actual = np.maximum(current / max(current.sum(), 1), _EMPTY_BIN_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def jensen_shannon_distance(reference: np.ndarray, current: np.ndarray) -> float:
    # SciPy is imported where it is used: about 0.9 s in each stage process, which a run without a champion
    # (nothing to compare with) does not pay.
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(reference.astype(float), current.astype(float), base=2))


def homogeneity_p_value(reference: np.ndarray, new: np.ndarray) -> float:
    """Chi-square test that the new counts come from the reference's distribution (1.0 when nothing is new)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([reference, new])
    table = table[:, table.sum(axis=0) > 0]
    if new.sum() == 0 or reference.sum() == 0 or table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table).pvalue)


def compare_profiles(reference: DataProfile, current: DataProfile, settings: DriftParams) -> list[dict]:
    """One row per split and statistic: {split, statistic, measure, value, threshold, param, new_images, p_value,
    drifted}. A split that is empty on either side has nothing to compare and gets no row."""
    rows = []
    for split in SPLITS:
        if not reference.images(split) or not current.images(split):
            continue
        before, after, new = reference.totals(split), current.totals(split), current.new_since(reference, split)
        new_images = int(new["labels"].sum())
        value = jensen_shannon_distance(before["labels"], after["labels"])
        rows.append(_row(split, "labels", "Jensen-Shannon distance", value, "max_label_js_distance", settings,
                         new_images, homogeneity_p_value(before["labels"], new["labels"])))
        for statistic in PIXEL_STATISTICS:
            groups = decile_groups(before[statistic])
            reference_groups = regroup(before[statistic], groups)
            value = population_stability_index(reference_groups, regroup(after[statistic], groups))
            p_value = homogeneity_p_value(reference_groups, regroup(new[statistic], groups))
            rows.append(_row(split, statistic, "PSI", value, "max_pixel_psi", settings, new_images, p_value))
    return rows


def _row(split: str, statistic: str, measure: str, value: float, threshold_key: str, settings: DriftParams,
         new_images: int, p_value: float) -> dict:
    threshold = getattr(settings, threshold_key)
    return {"split": split, "statistic": statistic, "measure": measure, "value": round(value, 6),
            "threshold": threshold, "param": f"drift.{threshold_key}", "new_images": new_images,
            "p_value": float(f"{p_value:.4g}"),
            "drifted": bool(value > threshold and p_value <= settings.significance_level)}


def describe_row(row: dict) -> str:
    """`train labels: Jensen-Shannon distance 0.2311 > drift.max_label_js_distance 0.1 (500 new images, chi-square
    p = 1.2e-40)`."""
    relation = ">" if row["value"] > row["threshold"] else "<="
    return (f"{row['split']} {row['statistic'].replace('_', ' ')}: {row['measure']} {row['value']:.4f} {relation} "
            f"{row['param']} {row['threshold']:g} ({row['new_images']} new images"
            f"{' in drop ' + row['part'] if row.get('part') else ''}, {row.get('test', 'chi-square')} p = "
            f"{row['p_value']:.3g})")
