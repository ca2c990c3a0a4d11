"""`make bench` target 16 (issue 30): what ingest's gates see in new data, on real Fashion-MNIST, on its own with
`make bench-gates` (python -m benchmarks.data_gates).

Target 16, near-copies (tasks/lib/near_copies.py, `ingest.near_copy_correlation`):
- the threshold was set on training images 0-9999 (at most 0.1 % of them refused against the 10,000 test images);
  here, the rate at which training images 10000-19999, which chose nothing, are refused against the test split, with
  its 95 % upper bound (Clopper-Pearson). Fashion-MNIST holds a few true copies across its splits: they count as
  refusals here too;
- the share of copies of 1,000 test images caught as near-copies of the image they copy: moved by up to 2 px,
  brightness times 0.9-1.1, JPEG quality 75; median and range over 3 seeds;
- images per second: each new image against the 10,000 test images (and, in `make bench`, target 8's drop of
  10,000 files into mnist-sample, against its 5,000 images and each other).

Target 17, labels the champion disputes (tasks/lib/label_issues.py): a champion (the lecture's dense model, which
trains in seconds, CHAMPION_EPOCHS epochs) trained on training images 0-49999; the other 10,000 dropped with 5 % of
their labels moved to another class at random (seeded, 3 seeds). Precision, recall and F1 of cleanlab as ingest runs
it, of cleanlab's default filter, and of the baseline "the champion's top class is not the label"; target:
cleanlab's F1 above the baseline's.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timezone

import numpy as np

SECTION = "## What production sees (targets 16-17, `make bench-gates`)"
SECTION_BEFORE = "## What production sees (target 16, `make bench-gates`)"  # an earlier title, replaced too
FLIP_SEEDS = (0, 1, 2)
FLIPPED_SHARE = 0.05
CHAMPION_EPOCHS = 5
SEEDS = (0, 1, 2)
COPIED = 1000
GOALS = {"moved": 0.99, "brighter": 0.99, "jpeg": 0.90}
KINDS = {"moved": "moved by up to 2 px", "brighter": "brightness times 0.9-1.1", "jpeg": "JPEG quality 75"}


def near_copy_figures(log) -> dict:
    from tasks.common.config import load_params
    from tasks.lib.near_copies import best_matches
    from tests.conftest import near_copies, real_fashion_images
    from benchmarks.measure import PROJECT_ROOT

    threshold = load_params(PROJECT_ROOT / "params.yaml").ingest.near_copy_correlation
    train, _ = real_fashion_images(20_000, "train")
    test, _ = real_fashion_images(10_000, "test")
    log("16: near-copies: training images 0-9999 against the test split (the threshold's own)")
    chose = best_matches(train[:10_000], test).correlation
    log("16: near-copies: training images 10000-19999 against the test split (held out)")
    started = time.perf_counter()
    held_out = best_matches(train[10_000:], test).correlation
    seconds = time.perf_counter() - started
    caught: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for seed in SEEDS:
        rows = np.random.default_rng(seed).choice(len(test), COPIED, replace=False)
        for kind, copies in near_copies(test[rows], seed=seed).items():
            matches = best_matches(copies, test)
            caught[kind].append(float(np.mean((matches.correlation >= threshold) & (matches.index == rows))))
    refused = int((held_out >= threshold).sum())
    return {"threshold": threshold, "images": len(held_out), "refused": refused,
            "upper_95": _clopper_pearson_upper(refused, len(held_out)),
            "choosing_set_refused": int((chose >= threshold).sum()),
            "choosing_set_quantile_999": float(np.quantile(chose, 0.999)),
            "caught": caught, "images_per_second": len(held_out) / seconds, "reference_images": len(test)}


def label_figures(log) -> dict:
    from tasks.common.config import TrainParams
    from tasks.lib.label_issues import FILTER, baseline_disputes, disputed_labels
    from tasks.train import build_model
    from tests.conftest import real_fashion_images

    images, labels = real_fashion_images(60_000, "train")
    log(f"17: labels: a champion on training images 0-49999, {CHAMPION_EPOCHS} epochs")
    model = build_model(TrainParams(seed=0))
    model.fit(images[:50_000] / np.float32(255), labels[:50_000], epochs=CHAMPION_EPOCHS, batch_size=128, verbose=0)
    started = time.perf_counter()
    probabilities = model.predict(images[50_000:] / np.float32(255), batch_size=1024, verbose=0)
    predict_seconds = time.perf_counter() - started
    true = labels[50_000:]
    methods: dict[str, list[dict]] = {FILTER: [], "prune_by_noise_rate": [], "baseline": []}
    cleanlab_seconds = []
    for seed in FLIP_SEEDS:
        rng = np.random.default_rng(seed)
        flipped = rng.choice(len(true), int(FLIPPED_SHARE * len(true)), replace=False)
        given = true.copy()
        given[flipped] = (given[flipped] + rng.integers(1, 10, len(flipped))) % 10
        planted = set(flipped.tolist())
        started = time.perf_counter()
        found = {FILTER: {suspect.row for suspect in disputed_labels(probabilities, given) or []}}
        cleanlab_seconds.append(time.perf_counter() - started)
        found["prune_by_noise_rate"] = {suspect.row for suspect in
                                        disputed_labels(probabilities, given, "prune_by_noise_rate") or []}
        found["baseline"] = set(baseline_disputes(probabilities, given).tolist())
        for method, rows in found.items():
            hits = len(rows & planted)
            precision, recall = hits / max(len(rows), 1), hits / len(planted)
            methods[method].append({"precision": precision, "recall": recall,
                                    "f1": 2 * precision * recall / max(precision + recall, 1e-12),
                                    "flagged": len(rows)})
    return {"methods": methods, "filter": FILTER, "images": len(true), "planted": int(FLIPPED_SHARE * len(true)),
            "champion_test_accuracy_on_clean_drop": float(np.mean(probabilities.argmax(axis=1) == true)),
            "images_per_second": len(true) / (predict_seconds + statistics.median(cleanlab_seconds))}


def label_lines(figures: dict) -> list[str]:
    def median(method: str, key: str) -> float:
        return statistics.median(run[key] for run in figures["methods"][method])

    def said(method: str) -> str:
        runs = figures["methods"][method]
        return (f"precision {median(method, 'precision'):.3f}, recall {median(method, 'recall'):.3f}, F1 "
                f"{median(method, 'f1'):.3f} (F1 {min(run['f1'] for run in runs):.3f}-"
                f"{max(run['f1'] for run in runs):.3f})")

    chosen = figures["filter"]
    met = "target met" if median(chosen, "f1") > median("baseline", "f1") else "target missed"
    return [f"17. labels a dense champion disputes, {figures['planted']} of {figures['images']:,} planted (5 %, "
            f"{len(FLIP_SEEDS)} seeds, medians): {met}: cleanlab as ingest runs it ({chosen}): {said(chosen)}; "
            f"baseline (top class is not the label): {said('baseline')}; cleanlab's default filter "
            f"(prune_by_noise_rate): {said('prune_by_noise_rate')}; the champion's accuracy on the drop's true "
            f"labels {figures['champion_test_accuracy_on_clean_drop']:.4f}",
            f"17. label check speed: {figures['images_per_second']:.0f} images/s (the champion's probabilities, by "
            "Keras here and by ONNX Runtime in ingest, and cleanlab)"]


def _clopper_pearson_upper(events: int, trials: int, confidence: float = 0.95) -> float:
    """The one-sided upper bound of a rate seen `events` times in `trials`."""
    from scipy.stats import beta

    return 1.0 if events >= trials else float(beta.ppf(confidence, events + 1, trials - events))


def near_copy_lines(figures: dict, ingest: dict | None = None) -> list[str]:
    rate = figures["refused"] / figures["images"]
    met = "target met" if rate <= 0.001 else "target missed"
    lines = [f"16. near-copies, false refusals: {met}: {figures['refused']} of {figures['images']:,} real training "
             f"images never used to choose (rows 10000-19999) refused against the test split at "
             f"ingest.near_copy_correlation {figures['threshold']}: {100 * rate:.2f} % (95 % upper bound "
             f"{100 * figures['upper_95']:.2f} %) vs <= 0.1 %; on rows 0-9999, which chose it: "
             f"{figures['choosing_set_refused']} (their 99.9th percentile {figures['choosing_set_quantile_999']:.4f})"]
    for kind, shares in figures["caught"].items():
        median = statistics.median(shares)
        met = "target met" if median >= GOALS[kind] else "target missed"
        lines.append(f"16. near-copies caught, {KINDS[kind]}: {met}: {100 * median:.1f} % vs >= "
                     f"{100 * GOALS[kind]:.0f} % (median of {len(shares)} seeds of {COPIED:,} test images, "
                     f"{100 * min(shares):.1f}-{100 * max(shares):.1f} %)")
    lines.append(f"16. near-copy check speed: {figures['images_per_second']:.0f} new images/s against "
                 f"{figures['reference_images']:,} held (one matrix product per shift, 25 shifts)")
    if ingest and ingest.get("near_copy_check"):
        checked, held, seconds = ingest["near_copy_check"]
        lines.append(f"16. near-copy check in target 8's ingest: {checked:,} new images against the {held:,} held "
                     f"and each other: {checked / seconds:.0f} images/s ({seconds:.1f} s)")
    return lines


def main() -> int:
    """Target 16 alone: prints its verdict lines and puts them in RESULTS.md as a section of their own (replacing an
    earlier one), with the machine and the date; the other sections stay as they were written."""
    from benchmarks.measure import PROJECT_ROOT, machine_details

    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    figures = near_copy_figures(log)
    labels = label_figures(log)
    machine = machine_details()
    section = "\n".join([
        SECTION, "",
        f"Run {datetime.now(timezone.utc).isoformat(timespec='seconds')} at commit {machine['commit']} on "
        f"{machine['cpu']} ({machine['cpu_flags']}), {machine['cores']} cores, {machine['memory_gib']} GiB, Python "
        f"{machine['python']}: `make bench-gates`, {time.perf_counter() - started:.0f} s.", "",
        *[f"- {line}" for line in near_copy_lines(figures) + label_lines(labels)], ""])
    results = PROJECT_ROOT / "benchmarks" / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    before, _, after = text.replace(SECTION_BEFORE, SECTION).partition(SECTION)
    rest = after[after.find("\n## "):] if "\n## " in after else ""  # a later section stays
    results.write_text(before.rstrip("\n") + "\n\n" + section + rest)
    print(json.dumps({"machine": machine, "near_copies": figures, "labels": labels}, indent=1, default=str))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
