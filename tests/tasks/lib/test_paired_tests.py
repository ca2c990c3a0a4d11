"""tasks/lib/paired_tests.py: exact McNemar tests (two- and one-sided) against scipy, and Holm's adjustment."""

import numpy as np
import pytest

from tasks.lib.paired_tests import binomial_half_tail, holm_adjusted, mcnemar_exact, worse_p_value


def pairs(champion_only: int, challenger_only: int, both: int = 5):
    champion = np.array([True] * champion_only + [False] * challenger_only + [True] * both)
    challenger = np.array([False] * champion_only + [True] * challenger_only + [True] * both)
    return champion, challenger


@pytest.mark.parametrize("champion_only, challenger_only", [(0, 1), (1, 1), (3, 9), (7, 0), (50, 61), (344, 288),
                                                            (0, 400), (1500, 1450)])
def test_mcnemar_p_value_equals_scipy_binomtest(champion_only, challenger_only):
    from scipy.stats import binomtest

    champion_correct, challenger_correct = pairs(champion_only, challenger_only)

    result = mcnemar_exact(champion_correct, challenger_correct, 0.05)

    expected = binomtest(min(champion_only, challenger_only), champion_only + challenger_only, 0.5).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)



@pytest.mark.parametrize("champion_only, challenger_only", [(0, 0), (1, 0), (14, 4), (7, 0), (3, 9), (150, 20)])
def test_the_one_sided_p_value_equals_scipys_greater_alternative(champion_only, challenger_only):
    from scipy.stats import binomtest

    p_value = worse_p_value(*pairs(champion_only, challenger_only))

    total = champion_only + challenger_only
    expected = binomtest(champion_only, total, 0.5, alternative="greater").pvalue if total else 1.0
    assert p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_holm_equals_statsmodels_definition_on_a_worked_example():
    """Holm (1979): sorted p 0.01, 0.04, 0.03 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)."""
    adjusted = holm_adjusted({"a": 0.01, "b": 0.04, "c": 0.03})

    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm_adjusted({"a": 0.6, "b": 0.9}) == {"a": 1.0, "b": 1.0}  # capped at 1


def test_no_discordant_pairs_means_no_evidence():
    assert binomial_half_tail(0, 0) == 1.0
    assert mcnemar_exact(*pairs(0, 0), 0.05).p_value == 1.0 and not mcnemar_exact(*pairs(0, 0), 0.05).significant
