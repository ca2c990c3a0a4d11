"""Sweep trials: grid expansion, validation before any work, ranking."""

import re

import pytest

from tasks.common.architectures import ARCHITECTURES
from tasks.common.errors import ConfigError
from tasks.lib.sweep import TrialResult, check_trials, expand_grid, param_overrides, rank_trials, ranking_table
from tests.conftest import project_params_document


def test_grid_expands_to_every_combination():
    trials = expand_grid({"dense.units": [64, 128], "learning_rate": [0.001, 0.01, 0.1]})

    assert len(trials) == 6 and trials[0] == {"dense.units": 64, "learning_rate": 0.001}
    assert {(trial["dense.units"], trial["learning_rate"]) for trial in trials} == {
        (units, rate) for units in (64, 128) for rate in (0.001, 0.01, 0.1)}


@pytest.mark.parametrize("values", [[], 64, "64"])
def test_grid_values_must_be_a_non_empty_list(values):
    expected = f"sweep grid 'dense.units': expected a non-empty list of values, found {values!r}"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        expand_grid({"dense.units": values})


def test_trials_become_dataset_keys_so_they_win_over_dataset_overrides():
    assert param_overrides("mnist-sample", {"dense.units": 64, "threshold": 0.95, "model": "cnn"}) == {
        "data.mnist-sample.train.dense.units": 64, "data.mnist-sample.threshold": 0.95,
        "data.mnist-sample.train.model": "cnn"}


def test_valid_trials_pass_and_the_document_is_left_alone():
    document = project_params_document()
    before = repr(document)

    trials = [{"cnn.dense_units": 64}, {"threshold": 0.95, "batch_size": 32}, {"model": "dense", "dense.units": 16}]
    assert check_trials(document, "mnist-sample", trials) == trials
    assert repr(document) == before


def test_a_mapping_value_is_refused_before_any_trial_runs():
    with pytest.raises(ConfigError, match=r"sweep trial 1 .*: \['threshold'\] hold a mapping; a trial sets one value"):
        check_trials(project_params_document(), "mnist-sample", [{"threshold": {"dense": 0.9}}])


def test_unknown_key_names_the_trial_and_the_allowed_keys():
    allowed = ["batch_size", "epochs", "learning_rate", "model", "threshold",
               *(f"{name}.{setting}" for name, architecture in ARCHITECTURES.items()
                 for setting in architecture.settings.model_fields)]  # every architecture's settings
    assert "dense.units" in allowed and "cnn.filters" in allowed
    with pytest.raises(ConfigError, match=re.escape(f"sweep trial 2 {{'dropout': 0.2}}: unknown key(s) ['dropout']; "
                                                    f"a sweep may vary {sorted(allowed)}")):
        check_trials(project_params_document(), "mnist-sample", [{"cnn.dense_units": 64}, {"dropout": 0.2}])


def test_bad_value_names_the_trial_key_and_value_before_anything_runs():
    with pytest.raises(ConfigError) as raised:
        check_trials(project_params_document(), "mnist-sample", [{"learning_rate": -1}])

    assert "sweep trial 1 {'learning_rate': -1}" in str(raised.value)
    assert "data.mnist-sample.train.learning_rate: Input should be greater than 0 (found -1)" in str(raised.value)


def test_no_trials_is_an_error():
    with pytest.raises(ConfigError, match="sweep: no trials"):
        check_trials(project_params_document(), "mnist-sample", [])


def test_ranking_puts_the_most_accurate_on_validation_first_then_the_lowest_validation_loss_and_failures_last():
    results = [TrialResult("a", {"dense.units": 16}, 0.90, 0.30, 5, 10.0),
               TrialResult("b", {"dense.units": 32}, seconds=2.0, error="CalledProcessError: boom"),
               TrialResult("c", {"dense.units": 64}, 0.95, 0.20, 4, 12.0),
               TrialResult("d", {"dense.units": 128}, 0.95, 0.10, 3, 11.0)]

    ranked = rank_trials(results)

    assert [result.name for result in ranked] == ["d", "c", "a", "b"]
    table = ranking_table(ranked)
    assert table[0] == {"rank": 1, "experiment": "d", "dense.units": 128, "val_accuracy": 0.95, "val_loss": 0.1,
                        "stop_epoch": 3, "seconds": 11.0, "error": ""}
    assert table[-1]["rank"] == "-" and table[-1]["error"] == "CalledProcessError: boom"

