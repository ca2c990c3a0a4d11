"""Data profiles and the drift measures, on hand-checked numbers and on real Fashion-MNIST and MNIST images."""

import numpy as np
import pytest

from tasks.common.config import DriftParams
from tasks.lib.data_profile import (PSI_GROUPS, compare_profiles, decile_groups, describe_row, jensen_shannon_distance,
                                    population_stability_index, profile_parts, regroup)
from tasks.lib.mnist_sample import build_mnist_sample
from tests.conftest import real_fashion_images

NAMES = tuple(str(index) for index in range(10))
DEFAULTS = DriftParams(max_label_js_distance=0.1, max_pixel_psi=0.2, significance_level=0.01)
NOTHING = (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))


@pytest.fixture(scope="module")
def fashion():
    return real_fashion_images(6000, "train"), real_fashion_images(1000, "test")


def profile(*parts, names=None):
    return profile_parts("d", NAMES, [(name, splits) for name, splits in zip(names or [f"part{index}" for index in
                                                                                      range(len(parts))], parts)])


def drifted(rows):
    return {(row["split"], row["statistic"]) for row in rows if row["drifted"]}


def test_psi_and_jensen_shannon_on_hand_computed_values():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert population_stability_index(np.array([50, 50]), np.array([25, 75])) == pytest.approx(0.27465, abs=1e-5)
    assert population_stability_index(np.array([3, 7]), np.array([30, 70])) == 0
    assert jensen_shannon_distance(np.array([5, 5, 0]), np.array([10, 10, 0])) == 0
    assert jensen_shannon_distance(np.array([5, 0]), np.array([0, 5])) == pytest.approx(1.0)


def test_the_profile_of_the_parts_adds_up_to_the_profile_of_the_whole(fashion):
    (train, test) = fashion
    whole = profile({"train": (train[0][:900], train[1][:900]), "test": (test[0][:300], test[1][:300])})
    parts = profile({"train": (train[0][:500], train[1][:500]), "test": (test[0][:300], test[1][:300])},
                    {"train": (train[0][500:900], train[1][500:900]), "test": NOTHING})

    for split in ("train", "test"):
        for name, counts in whole.totals(split).items():
            assert np.array_equal(parts.totals(split)[name], counts), (split, name)
    assert parts.images("train") == 900 and parts.part_names == ["part0", "part1"]
    assert whole.totals("train")["labels"].tolist() == np.bincount(train[1][:900], minlength=10).tolist()


def test_decile_groups_hold_about_a_tenth_of_the_reference_each(fashion):
    counts = profile({"train": fashion[0], "test": fashion[1]}).totals("train")["mean_intensity"]
    grouped = regroup(counts, decile_groups(counts))

    assert grouped.sum() == counts.sum() and len(grouped) == PSI_GROUPS + 2
    assert grouped[0] == grouped[-1] == 0  # below and above everything the reference holds
    assert grouped.max() / counts.sum() < 0.1 + counts.max() / counts.sum()


def test_a_move_below_or_above_everything_the_reference_held_shows_in_the_psi():
    reference = np.zeros(50, dtype=np.int64)
    reference[10] = 1000  # every reference image in one bin
    lower, higher = np.zeros_like(reference), np.zeros_like(reference)
    lower[[5, 10]], higher[[10, 15]] = 500, 500
    groups = decile_groups(reference)

    for moved in (lower, higher):
        assert population_stability_index(regroup(reference, groups), regroup(moved, groups)) > 2


def test_more_of_the_same_data_is_no_drift(fashion):
    (train, test) = fashion
    base = {"train": (train[0][:2000], train[1][:2000]), "test": (test[0][:500], test[1][:500])}
    more = {"train": (train[0][2000:3000], train[1][2000:3000]), "test": (test[0][500:700], test[1][500:700])}

    rows = compare_profiles(profile(base), profile(base, more), DEFAULTS)

    assert len(rows) == 6 and not drifted(rows)
    assert {row["new_images"] for row in rows} == {1000, 200}


def test_a_drop_of_one_class_drifts_the_labels_and_not_the_pixels(fashion):
    (train, test) = fashion
    base = {"train": (train[0][:2000], train[1][:2000]), "test": (test[0][:500], test[1][:500])}
    bags = train[1][2000:] == 8
    drop = {"train": (train[0][2000:][bags], train[1][2000:][bags]), "test": NOTHING}

    rows = compare_profiles(profile(base), profile(base, drop), DEFAULTS)

    assert drifted(rows) == {("train", "labels")}
    (labels,) = [row for row in rows if row["drifted"]]
    assert describe_row(labels).startswith("train labels: Jensen-Shannon distance 0.1")
    assert f"> drift.max_label_js_distance 0.1 ({int(bags.sum())} new images, chi-square p = " in describe_row(labels)


def test_digits_among_clothes_drift_the_pixels_and_not_the_labels(fashion):
    (train, test) = fashion
    digits = build_mnist_sample()
    base = {"train": (train[0][:2000], train[1][:2000]), "test": (test[0][:500], test[1][:500])}
    drop = {"train": (digits[("train", "images")][:2000], digits[("train", "labels")][:2000]), "test": NOTHING}

    rows = compare_profiles(profile(base), profile(base, drop), DEFAULTS)

    assert drifted(rows) == {("train", "mean_intensity"), ("train", "ink_area")}


def test_on_small_data_a_measure_over_its_threshold_is_not_drift_unless_the_new_images_really_differ(fashion):
    (train, test) = fashion
    base = {"train": (train[0][:100], train[1][:100]), "test": (test[0][:40], test[1][:40])}
    more = {"train": (train[0][100:200], train[1][100:200]), "test": (test[0][40:80], test[1][40:80])}

    rows = compare_profiles(profile(base), profile(base, more), DEFAULTS)

    noisy = [row for row in rows if row["value"] > row["threshold"]]
    assert noisy and all(row["p_value"] > 0.01 for row in noisy) and not drifted(rows)


def test_the_new_images_are_the_parts_the_reference_lacks_or_holds_otherwise(fashion):
    (train, test) = fashion
    base = {"train": (train[0][:2000], train[1][:2000]), "test": (test[0][:500], test[1][:500])}
    drop = {"train": (train[0][2000:2300], train[1][2000:2300]), "test": NOTHING}
    rebuilt = {"train": (train[0][2300:2500], train[1][2300:2500]), "test": NOTHING}  # same name, other pixels
    later = {"train": (train[0][3000:3100], train[1][3000:3100]), "test": (test[0][500:550], test[1][500:550])}
    reference = profile(base, drop, names=["base", "d1"])

    rows = compare_profiles(reference, profile(base, rebuilt, later, names=["base", "d1", "d2"]), DEFAULTS)

    assert {(row["split"], row["new_images"]) for row in rows} == {("train", 300), ("test", 50)} and not drifted(rows)
    other_base = {"train": (train[0][3000:6000], train[1][3000:6000]), "test": (test[0][500:1000], test[1][500:1000])}
    rows = compare_profiles(profile(base, names=["base"]), profile(other_base, names=["base"]), DEFAULTS)
    assert {row["new_images"] for row in rows} == {3000, 500} and not drifted(rows)
