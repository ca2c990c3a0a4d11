"""Real Keras training on a small real subset of MNIST digits (600 images): seconds per test."""

import csv
import io
import json

import numpy as np
import pytest

from tasks.common.config import TrainParams
from tasks.train import split_validation, train_model


def test_threshold_on_validation_accuracy_by_default_stops_training_and_says_so(digits, capsys):
    params = TrainParams(epochs=30, batch_size=32, threshold=0.8, seed=3)

    result = train_model(digits, params)

    assert result.summary.stopped_by_threshold and 1 <= result.summary.stop_epoch < 30
    assert result.summary.monitor == "val_accuracy" and result.summary.final_metrics["val_accuracy"] >= 0.8
    epochs = csv.DictReader(io.StringIO(digits.training_history_file.read_text()))
    validation_accuracy = [float(epoch["val_accuracy"]) for epoch in epochs]
    assert max(validation_accuracy[:-1], default=0) < 0.8  # the first epoch whose validation accuracy reached it
    assert "Reached 80% val_accuracy so cancelling training!" in capsys.readouterr().out
    # the validation figures a sweep ranks trials by, in DVC's metrics file of the stage
    assert json.loads(digits.training_metrics_file.read_text()) == {
        "val_accuracy": result.summary.final_metrics["val_accuracy"],
        "val_loss": result.summary.final_metrics["val_loss"], "stop_epoch": result.summary.stop_epoch,
        "validation_images": result.summary.validation_images}
    history = digits.training_history_file.read_text().splitlines()
    assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy"
    assert len(history) == 1 + result.summary.stop_epoch
    summary = json.loads(digits.training_summary_file.read_text())
    assert summary["stop_epoch"] == result.summary.stop_epoch and summary["params"]["threshold"] == 0.8
    assert summary["model_file"] == "models/mnist-sample/model.keras"  # the same in every clone
    assert digits.model_file.exists()


def test_the_lectures_training_accuracy_callback_is_one_key_away_and_stops_a_cnn_too(digits, capsys):
    params = TrainParams(model="cnn", cnn={"filters": [8, 16], "dense_units": 32}, epochs=20, batch_size=32,
                         learning_rate=0.003, threshold=0.8, seed=3, monitor="accuracy")

    result = train_model(digits, params)

    assert result.summary.stopped_by_threshold and result.summary.stop_epoch < 20
    epochs = digits.training_history_file.read_text().splitlines()[1:]
    training_accuracy = [float(line.split(",")[2]) for line in epochs]
    assert training_accuracy[-1] >= 0.8 and max(training_accuracy[:-1], default=0) < 0.8
    assert "Reached 80% accuracy so cancelling training!" in capsys.readouterr().out
    written = json.loads(digits.training_summary_file.read_text())["params"]
    assert written["model"] == "cnn" and written["cnn"] == {"filters": [8, 16], "dense_units": 32, "dropout": 0.2}
    assert "dense" not in written  # the architecture it did not train


def test_epoch_limit_when_threshold_not_reached(digits):
    result = train_model(digits, TrainParams(epochs=2, threshold=1.0))

    assert (result.summary.stop_epoch, result.summary.stopped_by_threshold) == (2, False)


def test_loss_monitor_stops_when_loss_falls_below(digits, capsys):
    result = train_model(digits, TrainParams(epochs=20, batch_size=16, monitor="val_loss", threshold=0.9))

    assert result.summary.stopped_by_threshold and result.summary.stop_epoch < 20
    assert result.summary.final_metrics["val_loss"] <= 0.9
    assert "Reached 0.9 val_loss so cancelling training!" in capsys.readouterr().out


def test_same_data_and_params_give_the_same_metrics(digits):
    params = TrainParams(epochs=2, threshold=1.0, seed=11)

    first = train_model(digits, params).summary.final_metrics
    second = train_model(digits, params).summary.final_metrics

    assert first == second


def test_validation_split_is_seeded_and_leaves_inputs_alone():
    images = np.arange(100, dtype=np.float32).reshape(100, 1, 1)
    labels = np.arange(100) % 10
    before = images.copy()

    (train_x, _), (validation_x, _) = split_validation(images, labels, 0.1, seed=5)
    (again_x, _), _ = split_validation(images, labels, 0.1, seed=5)

    assert (len(train_x), len(validation_x)) == (90, 10)
    np.testing.assert_array_equal(train_x, again_x)
    assert set(train_x.ravel()).isdisjoint(validation_x.ravel())
    np.testing.assert_array_equal(images, before)


def test_learning_rate_decays_along_a_cosine_to_five_percent(digits):
    import keras

    params = TrainParams(epochs=3, batch_size=64, learning_rate=0.004, learning_rate_decay_epochs=2, threshold=1.0)

    train_model(digits, params)

    optimizer = keras.saving.load_model(digits.model_file, safe_mode=True).optimizer
    schedule = optimizer._learning_rate
    steps_per_epoch = int(optimizer.iterations.numpy()) // 3
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == 2 * steps_per_epoch
    assert float(schedule(0)) == pytest.approx(0.004)
    assert float(schedule(steps_per_epoch)) == pytest.approx(0.004 * (0.05 + 0.95 * 0.5), rel=1e-4)
    assert float(optimizer.learning_rate) == pytest.approx(0.004 * 0.05, rel=1e-4)   # third epoch: the floor
