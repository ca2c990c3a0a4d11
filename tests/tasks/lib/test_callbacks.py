"""tasks/lib/callbacks.py: ThresholdStop ends training at the first epoch whose monitored metric reaches the
threshold (>= for accuracies, <= for names ending in "loss") and refuses an unlogged metric; EpochRecorder keeps
one JSON line per epoch so a run resumed by BackupAndRestore reports its whole history.

The hooks are called directly with `logs` dicts where the decision is the behaviour, and through a real `fit`
of a tiny Keras model (40 random samples, a few epochs) where the interplay with Keras is.
"""

import json

import keras
import numpy as np
import pytest

from tasks.common.errors import TrainingError
from tasks.lib.callbacks import EpochRecorder, ThresholdStop


def _tiny_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _samples(count=40):
    rng = np.random.default_rng(0)
    return rng.random((count, 4), dtype=np.float32), (np.arange(count) % 3).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    """One compiled model for the tests that only need `callback.model` to exist (no training)."""
    return _tiny_model()


def _drive(callback, model, monitor, values):
    """Call on_epoch_end with `values` of `monitor`, as fit does, until the callback stops training.

    Returns the 1-based epochs run."""
    callback.set_model(model)
    model.stop_training = False
    epochs = 0
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value, "other": 0.0})
        epochs = epoch + 1
        if model.stop_training:
            break
    return epochs


def test_accuracy_stops_at_the_first_epoch_at_or_above_the_threshold(model, capsys):
    stop = ThresholdStop("val_accuracy", 0.9)

    epochs = _drive(stop, model, "val_accuracy", [0.5, 0.89, 0.9, 0.95])

    assert epochs == 3 and stop.stopped_epoch == 3  # 0.9 itself reaches 0.9
    assert model.stop_training is True
    assert "Reached 90% val_accuracy so cancelling training!" in capsys.readouterr().out


def test_accuracy_below_the_threshold_never_stops(model, capsys):
    stop = ThresholdStop("accuracy", 0.995)

    epochs = _drive(stop, model, "accuracy", [0.1, 0.99, 0.994])

    assert epochs == 3 and stop.stopped_epoch is None
    assert model.stop_training is False
    assert capsys.readouterr().out == ""


def test_loss_stops_at_the_first_epoch_at_or_below_the_threshold(model, capsys):
    stop = ThresholdStop("val_loss", 0.3)

    epochs = _drive(stop, model, "val_loss", [0.9, 0.31, 0.3, 0.1])

    assert epochs == 3 and stop.stopped_epoch == 3
    assert model.stop_training is True
    assert "Reached 0.3 val_loss so cancelling training!" in capsys.readouterr().out


def test_loss_above_the_threshold_never_stops_even_when_it_rises(model):
    """A loss is lower-is-better: values above the threshold (which would "reach" it as accuracies) go on."""
    stop = ThresholdStop("loss", 0.3)

    epochs = _drive(stop, model, "loss", [0.5, 0.7, 2.0])

    assert epochs == 3 and stop.stopped_epoch is None and model.stop_training is False


def test_numpy_metric_values_are_compared_as_numbers(model):
    stop = ThresholdStop("accuracy", 0.5)

    epochs = _drive(stop, model, "accuracy", [np.float32(0.25), np.float64(0.75)])

    assert epochs == 2 and stop.stopped_epoch == 2


@pytest.mark.parametrize("logs, found", [
    ({"loss": 0.4, "accuracy": 0.8}, "['accuracy', 'loss']"),
    (None, "[]"),
], ids=["other-metrics", "no-logs"])
def test_a_metric_that_is_not_logged_is_a_training_error_listing_what_is(model, logs, found):
    stop = ThresholdStop("val_accuracy", 0.9)
    stop.set_model(model)

    with pytest.raises(TrainingError) as raised:
        stop.on_epoch_end(0, logs)

    assert str(raised.value) == f"threshold callback: metric 'val_accuracy' is not logged; found {found}"
    assert stop.stopped_epoch is None


def test_in_fit_a_reached_threshold_ends_training_after_that_epoch():
    images, labels = _samples()
    model = _tiny_model()
    stop = ThresholdStop("accuracy", 0.0)  # any accuracy reaches 0 %: stop after the first epoch

    history = model.fit(images, labels, epochs=5, batch_size=8, verbose=0, callbacks=[stop])

    assert stop.stopped_epoch == 1
    assert len(history.history["accuracy"]) == 1


def test_in_fit_an_unreached_loss_threshold_runs_every_epoch():
    images, labels = _samples()
    model = _tiny_model()
    stop = ThresholdStop("loss", 0.0)  # a cross-entropy loss is never <= 0

    history = model.fit(images, labels, epochs=3, batch_size=8, verbose=0, callbacks=[stop])

    assert stop.stopped_epoch is None
    assert len(history.history["loss"]) == 3


def test_in_fit_monitoring_a_validation_metric_without_validation_data_fails_the_fit():
    images, labels = _samples()
    model = _tiny_model()

    with pytest.raises(TrainingError, match=r"^threshold callback: metric 'val_loss' is not logged; "
                                            r"found \['accuracy', 'loss'\]$"):
        model.fit(images, labels, epochs=3, batch_size=8, verbose=0, callbacks=[ThresholdStop("val_loss", 0.5)])


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_recorder_writes_one_line_per_epoch_and_its_history_equals_keras_history(tmp_path):
    images, labels = _samples()
    model = _tiny_model()
    log = tmp_path / "history.jsonl"
    recorder = EpochRecorder(log)

    history = model.fit(images, labels, epochs=3, batch_size=8, verbose=0, validation_data=(images, labels),
                        callbacks=[recorder])

    lines = _lines(log)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert lines == recorder.records
    assert sorted(recorder.history()) == sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for name, values in history.history.items():
        assert recorder.history()[name] == pytest.approx(values), name


class _Interrupted(Exception):
    pass


class _InterruptAtEpoch(keras.callbacks.Callback):
    """Raise at the end of 0-based `epoch`: placed after the recorder and before the backup, the recorder has
    written that epoch's line but the backup never records the epoch as done (a kill at the worst moment)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupted(f"interrupted at the end of epoch {epoch + 1}")


def test_a_new_recorder_over_the_same_file_continues_an_interrupted_runs_history(tmp_path):
    images, labels = _samples()
    backup_dir, log = tmp_path / "backup", tmp_path / "history.jsonl"
    first = EpochRecorder(log)
    with pytest.raises(_Interrupted, match="interrupted at the end of epoch 3"):
        _tiny_model().fit(images, labels, epochs=5, batch_size=8, verbose=0, shuffle=False,
                          callbacks=[first, _InterruptAtEpoch(2), keras.callbacks.BackupAndRestore(str(backup_dir))])
    before = _lines(log)
    assert [line["epoch"] for line in before] == [1, 2, 3]  # epoch 3 logged but not backed up

    resumed = EpochRecorder(log)  # a new process: the history comes from the file
    assert resumed.records == before
    epochs_run = []
    _tiny_model().fit(images, labels, epochs=5, batch_size=8, verbose=0, shuffle=False,
                      callbacks=[resumed, keras.callbacks.BackupAndRestore(str(backup_dir)),
                                 keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))])

    assert epochs_run == [2, 3, 4]  # really resumed after epoch 2: only epochs 3..5 ran again
    after = _lines(log)
    assert [line["epoch"] for line in after] == [1, 2, 3, 4, 5]  # the repeated epoch 3 is there once
    assert after[:2] == before[:2]  # epochs the resumed run did not repeat are kept as recorded
    assert after == resumed.records
    assert resumed.history()["loss"] == [line["loss"] for line in after]


def test_a_run_starting_at_epoch_0_drops_a_stale_log(tmp_path, model):
    log = tmp_path / "history.jsonl"
    log.write_text('{"epoch": 1, "loss": 9.0}\n{"epoch": 2, "loss": 8.0}\n')
    recorder = EpochRecorder(log)
    recorder.set_model(model)
    assert recorder.history() == {"loss": [9.0, 8.0]}

    recorder.on_epoch_begin(0)

    assert log.read_text() == "" and recorder.records == [] and recorder.history() == {}
    recorder.on_epoch_end(0, {"loss": np.float32(0.5), "accuracy": np.float64(0.25)})
    assert log.read_text() == '{"epoch": 1, "loss": 0.5, "accuracy": 0.25}\n'
    assert recorder.history() == {"loss": [0.5], "accuracy": [0.25]}


def test_resuming_after_epoch_k_keeps_only_the_first_k_lines(tmp_path, model):
    log = tmp_path / "history.jsonl"
    log.write_text("".join(json.dumps({"epoch": epoch, "loss": 1.0 / epoch}) + "\n" for epoch in (1, 2, 3)))
    recorder = EpochRecorder(log)
    recorder.set_model(model)

    recorder.on_epoch_begin(1)  # BackupAndRestore restored the run after epoch 1

    assert _lines(log) == [{"epoch": 1, "loss": 1.0}]
    recorder.on_epoch_end(1, {"loss": 0.75})
    recorder.on_epoch_begin(2)
    recorder.on_epoch_end(2, {"loss": 0.5})
    assert _lines(log) == [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.75}, {"epoch": 3, "loss": 0.5}]
    assert recorder.history() == {"loss": [1.0, 0.75, 0.5]}
