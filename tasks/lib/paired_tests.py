"""Exact paired tests on two classifiers' per-image correctness over the same test images, as promote uses them.

McNemar's test counts the discordant pairs: images only the champion gets right, and images only the challenger
gets right. Under "the two models are equally good", each discordant pair goes either way with probability 1/2,
so the counts are binomial and the p-values are exact. Integer arithmetic keeps them exact; scipy is not
imported because importing it cost the promote stage most of its run time (it gives the same values, tested).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from tasks.lib.outputs import McNemarResult


def discordant_counts(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> tuple[int, int]:
    """(champion-only correct, challenger-only correct)."""
    return (int(np.sum(champion_correct & ~challenger_correct)),
            int(np.sum(challenger_correct & ~champion_correct)))


def mcnemar_exact(champion_correct: np.ndarray, challenger_correct: np.ndarray, level: float) -> McNemarResult:
    """Two-sided exact McNemar test: do the two models differ at all?"""
    champion_only, challenger_only = discordant_counts(champion_correct, challenger_correct)
    p_value = min(1.0, 2 * binomial_half_tail(max(champion_only, challenger_only), champion_only + challenger_only))
    return McNemarResult(champion_only, challenger_only, p_value, p_value < level)


def worse_p_value(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> float:
    """One-sided exact McNemar test: the probability of the champion winning at least this many of the
    discordant pairs if the challenger were as good. Small: the challenger is really worse on these images."""
    champion_only, challenger_only = discordant_counts(champion_correct, challenger_correct)
    return binomial_half_tail(champion_only, champion_only + challenger_only)


def binomial_half_tail(successes: int, trials: int) -> float:
    """P(X >= successes) for X ~ Binomial(trials, 1/2), exactly (1.0 when there are no trials)."""
    if trials == 0 or successes <= 0:
        return 1.0
    upper_tail = sum(math.comb(trials, count) for count in range(successes, trials + 1))
    return float(Fraction(upper_tail, 2 ** trials))


def holm_adjusted(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment for testing every class at once: a family-wise error rate of `level` holds
    when each adjusted p-value is compared with `level`."""
    ordered = sorted(p_values, key=lambda name: p_values[name])
    adjusted, running = {}, 0.0
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p_values[name]))
        adjusted[name] = running
    return adjusted
