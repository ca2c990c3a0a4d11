"""tasks/lib/outputs.py: each stage output's writer and reader, and what a reader refuses."""

import re

import numpy as np
import pytest

from tasks.common.errors import DataValidationError, OutputFileError
from tasks.lib.outputs import (Metrics, McNemarResult, PromotionDecision, TrainingSummary, check_normalized,
                               load_split, read_history, read_record, save_split, write_history, write_record)
from tasks.normalize import normalize_images
from tests.conftest import make_images


def _normalized(count=6, seed=0):
    images, labels = make_images(count, seed=seed)
    return images.astype(np.float32) / np.float32(255), labels


def test_check_normalized_accepts_normalized_data():
    images, labels = _normalized()
    check_normalized(images, labels, "train.npz")  # no exception


def _with_nan(images, labels):
    images[3, 10, 10] = np.nan
    images[7, 0, 0] = np.nan
    return images, labels


def _above_one(images, labels):
    images[2, 5, 5] = 1.5
    return images, labels


def _wrong_shape(images, labels):
    return np.ascontiguousarray(images[:, :, :27]), labels


def _fewer_labels(images, labels):
    return images, labels[:-1]


@pytest.mark.parametrize("corrupt, problem", [
    (_with_nan, "NaN in 2 images, e.g. rows [3, 7]"),
    (_above_one, "values in [0, 1.5] where [0, 1] was expected"),
    (_wrong_shape, "shape (10, 28, 27) where (count, 28, 28) was expected"),
    (_fewer_labels, "10 images but 9 labels"),
], ids=["nan", "above-one", "wrong-shape", "label-count"])
def test_check_normalized_refuses_bad_data_naming_the_source(tmp_path, corrupt, problem):
    source = tmp_path / "processed" / "train.npz"
    images, labels = corrupt(*_normalized(10))

    with pytest.raises(DataValidationError) as raised:
        check_normalized(images, labels, source)

    message = str(raised.value)
    assert message.startswith(f"{source}: normalized data failed its checks: ")
    assert problem in message


def test_check_normalized_refuses_data_normalized_twice_with_small_pixels(tmp_path):
    images, labels = make_images(10)
    images = np.minimum(images, 200)  # brightest pixel 200: twice normalized, max is 200 / 255**2
    twice = normalize_images(images) / np.float32(255)

    with pytest.raises(DataValidationError, match=re.escape(f"{tmp_path}: normalized data failed its checks: ")
                       + r"max value 0\.003\d* <= 1/255: the data looks normalized twice"):
        check_normalized(twice, labels, tmp_path)


def test_check_normalized_refuses_data_normalized_twice(tmp_path):
    """Typical case: the brightest pixel is 255, so twice-normalized float32 data has a maximum of float32(1/255)."""
    images, labels = make_images(10)
    assert images.max() == 255
    twice = normalize_images(images) / np.float32(255)

    with pytest.raises(DataValidationError, match=r"<= 1/255: the data looks normalized twice"):
        check_normalized(twice, labels, tmp_path / "train.npz")


def test_save_and_load_split_round_trip(tmp_path):
    images, labels = _normalized()
    path = tmp_path / "train.npz"

    save_split(path, images, labels)
    loaded_images, loaded_labels = load_split(path)

    np.testing.assert_array_equal(loaded_images, images)
    np.testing.assert_array_equal(loaded_labels, labels)
    assert [entry.name for entry in tmp_path.iterdir()] == ["train.npz"]


def test_load_split_refuses_pickled_object_array(tmp_path):
    path = tmp_path / "train.npz"
    np.savez(path, images=np.array([object()], dtype=object), labels=np.zeros(1, dtype=np.uint8))

    with pytest.raises(ValueError, match="allow_pickle=False") as raised:
        load_split(path)
    assert not isinstance(raised.value, DataValidationError)


def test_load_split_checks_the_loaded_data(tmp_path):
    images, labels = _normalized()
    path = tmp_path / "train.npz"
    save_split(path, images * 2, labels)

    with pytest.raises(DataValidationError, match=re.escape(f"{path}: normalized data failed its checks: values in")):
        load_split(path)


class _FailsToConvert:
    """np.savez calls np.asanyarray on each array; this one fails after `images` is already in the archive."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("disk full while writing labels")


def test_save_split_is_atomic(tmp_path):
    path = tmp_path / "train.npz"
    save_split(path, *_normalized())
    before = path.read_bytes()

    with pytest.raises(RuntimeError, match="disk full while writing labels"):
        save_split(path, _normalized(count=50, seed=3)[0], _FailsToConvert())

    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["train.npz"]


METRICS = Metrics(test_accuracy=0.9, test_loss=0.3, stop_epoch=4, test_images=20)


def test_a_record_reads_back_equal_and_ignores_keys_it_does_not_know(tmp_path):
    path = tmp_path / "metrics.json"
    write_record(path, METRICS, written_by="a later version")

    assert read_record(path, Metrics) == METRICS


def test_a_promotion_decision_reads_back_with_its_mcnemar_result_typed(tmp_path):
    decision = PromotionDecision("custom", True, "promoted: every gate passed", 0.9, 0.8, 0.1, {"0": 0.1},
                                 [{"gate": "absolute accuracy gate", "passed": True, "detail": "0.9 vs 0.5"}],
                                 McNemarResult(1, 3, 0.625, False))
    write_record(tmp_path / "promotion.json", decision)

    read = read_record(tmp_path / "promotion.json", PromotionDecision)

    assert read == decision and isinstance(read.mcnemar, McNemarResult)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "missing; run the stage that writes it"),
    ("{not json", "not valid JSON (Expecting property name"),
    ("[1, 2]", "expected a JSON object, found list"),
    ('{"stop_epoch": 3, "monitor": "accuracy"}', "missing keys ['dataset', 'stopped_by_threshold', 'threshold', "),
])
def test_a_reader_refuses_a_file_its_writer_did_not_write_naming_it(tmp_path, content, problem):
    path = tmp_path / "training.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(OutputFileError, match=re.escape(f"{path}: {problem}")):
        read_record(path, TrainingSummary)


def test_history_round_trip_and_refusals(tmp_path):
    path = tmp_path / "training_history.csv"
    write_history(path, {"loss": [0.5, 0.25], "accuracy": [0.8, 0.9], "val_loss": [0.6, 0.4],
                         "val_accuracy": [0.7, 0.85]})

    assert read_history(path) == {"epoch": [1.0, 2.0], "loss": [0.5, 0.25], "accuracy": [0.8, 0.9],
                                  "val_loss": [0.6, 0.4], "val_accuracy": [0.7, 0.85]}
    path.write_text(path.read_text().replace("0.250000", "n/a"))
    with pytest.raises(OutputFileError, match=re.escape(f"{path}, line 3: expected numbers")):
        read_history(path)
    path.write_text("epoch,loss,accuracy\n1,0.5,0.8\n")
    with pytest.raises(OutputFileError, match=r"missing columns \['val_loss', 'val_accuracy'\]"):
        read_history(path)
    path.write_text("epoch,loss,accuracy,val_loss,val_accuracy\n")
    with pytest.raises(OutputFileError, match="no epochs recorded"):
        read_history(path)
