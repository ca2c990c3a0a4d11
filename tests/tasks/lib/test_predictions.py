"""tasks/lib/predictions.py: test-set predictions saved with a fingerprint of the test set they were made on.

load_predictions gives the saved labels back only for the same test set (None for another one, or for no file);
a damaged or foreign file is an ArrayFileError naming it. predict_labels is checked on a real Keras model whose
weights make the right answer known. (Pickled files are refused in tests/reliability/test_training_faults.py.)
"""

import numpy as np
import pytest

from tasks.common.errors import ArrayFileError
from tasks.lib import predictions
from tasks.lib.predictions import load_predictions, predict_labels, save_predictions
from tests.conftest import make_images

fingerprint_of = predictions.test_set_fingerprint  # imported under its own name, pytest would collect it as a test


def _test_set(count=20, seed=3):
    images, labels = make_images(count, seed=seed)
    return images.astype(np.float32) / np.float32(255), labels  # as the processed test.npz holds them


def _saved(tmp_path, count=20):
    images, labels = _test_set(count)
    predicted = ((labels + 1) % 10).astype(np.uint8)  # anything but the labels themselves
    path = tmp_path / "test_predictions.npz"
    save_predictions(path, predicted, fingerprint_of(images, labels))
    return path, images, labels, predicted


def test_saved_predictions_load_back_for_the_same_test_set(tmp_path):
    path, images, labels, predicted = _saved(tmp_path)

    loaded = load_predictions(path, fingerprint_of(images.copy(), labels.copy()))

    np.testing.assert_array_equal(loaded, predicted)
    assert loaded.dtype == np.uint8


def test_predictions_of_any_integer_type_are_saved_as_uint8(tmp_path):
    images, labels = _test_set()
    path = tmp_path / "test_predictions.npz"
    fingerprint = fingerprint_of(images, labels)

    save_predictions(path, np.array([9, 0, 3], dtype=np.int64), fingerprint)

    loaded = load_predictions(path, fingerprint)
    assert loaded.dtype == np.uint8 and loaded.tolist() == [9, 0, 3]


def test_no_saved_predictions_is_none(tmp_path):
    assert load_predictions(tmp_path / "test_predictions.npz", "0" * 64) is None


def _one_pixel_changed(images, labels):
    images[7, 14, 14] += np.float32(1 / 255)
    return images, labels


def _one_label_changed(images, labels):
    labels[19] = (labels[19] + 1) % 10
    return images, labels


def _one_image_fewer(images, labels):
    return images[:-1], labels[:-1]


def _images_reordered(images, labels):
    order = np.r_[1, 0, 2:len(images)]
    return images[order], labels


@pytest.mark.parametrize("change", [_one_pixel_changed, _one_label_changed, _one_image_fewer, _images_reordered],
                         ids=["one-pixel", "one-label", "one-image-fewer", "two-images-swapped"])
def test_predictions_made_on_another_test_set_are_none(tmp_path, change):
    path, images, labels, _ = _saved(tmp_path)
    other_images, other_labels = change(images.copy(), labels.copy())

    fingerprint = fingerprint_of(other_images, other_labels)

    assert fingerprint != fingerprint_of(images, labels)
    assert load_predictions(path, fingerprint) is None


def test_fingerprint_is_a_sha256_hex_digest_of_the_contents_not_of_the_memory_layout():
    images, labels = _test_set()
    fingerprint = fingerprint_of(images, labels)

    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert fingerprint_of(images.copy(), labels.copy()) == fingerprint
    assert fingerprint_of(np.asfortranarray(images), labels) == fingerprint  # same values, other layout
    strided = np.zeros((images.shape[0] * 2, 28, 28), dtype=np.float32)
    strided[::2] = images
    assert fingerprint_of(strided[::2], labels) == fingerprint  # a non-contiguous view of the same values


def test_saving_again_replaces_the_predictions_and_leaves_no_temporary_file(tmp_path):
    path, images, labels, _ = _saved(tmp_path)
    newer = np.zeros(len(labels), dtype=np.uint8)

    save_predictions(path, newer, fingerprint_of(images, labels))

    np.testing.assert_array_equal(load_predictions(path, fingerprint_of(images, labels)), newer)
    assert [entry.name for entry in tmp_path.iterdir()] == ["test_predictions.npz"]


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    path, images, labels, predicted = _saved(tmp_path)
    before = path.read_bytes()

    with pytest.raises(ValueError, match="invalid literal for int"):
        save_predictions(path, np.array(["seven"]), fingerprint_of(images, labels))

    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["test_predictions.npz"]


def test_a_truncated_file_is_refused_naming_it(tmp_path):
    path, images, labels, _ = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(ArrayFileError) as raised:
        load_predictions(path, fingerprint_of(images, labels))

    message = str(raised.value)
    assert message.startswith(f"{path}: cannot read arrays ['predicted', 'test_set_sha256'] (")
    assert message.endswith("); re-run the stage that writes it")


def test_an_npz_without_a_fingerprint_is_refused_naming_the_missing_array(tmp_path):
    """For instance a processed split written at the predictions path: it must not pass for predictions."""
    images, labels = _test_set()
    path = tmp_path / "test_predictions.npz"
    np.savez(path, images=images, labels=labels, predicted=labels)

    with pytest.raises(ArrayFileError, match=r"cannot read arrays \['predicted', 'test_set_sha256'\] "
                                             r"\(KeyError: .*test_set_sha256 is not a file in the archive"):
        load_predictions(path, fingerprint_of(images, labels))


def test_a_file_that_is_not_npz_is_refused_naming_it(tmp_path):
    path = tmp_path / "test_predictions.npz"
    path.write_text("actual,predicted\n3,3\n")  # the CSV the evaluate stage also writes

    with pytest.raises(ArrayFileError) as raised:
        load_predictions(path, "0" * 64)

    assert str(raised.value).startswith(f"{path}: cannot read arrays ['predicted', 'test_set_sha256'] (")


def test_predict_labels_is_the_argmax_of_the_model_output_as_uint8():
    import keras

    # One Dense layer with an identity kernel: the model's output is its input, so the argmax is known.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, use_bias=False)])
    model.layers[0].set_weights([np.eye(4, dtype=np.float32)])
    scores = np.array([[0.1, 0.9, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 2.0],
                       [5.0, 1.0, 1.0, 1.0],
                       [0.2, 0.1, 0.7, 0.3]], dtype=np.float32)

    predicted = predict_labels(model, scores)

    assert predicted.dtype == np.uint8
    assert predicted.tolist() == [1, 3, 0, 2]


def test_predict_labels_covers_more_images_than_one_batch():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, use_bias=False)])
    model.layers[0].set_weights([np.eye(3, dtype=np.float32)])
    expected = np.arange(2500) % 3  # more than the 1024 images of one prediction batch
    scores = np.eye(3, dtype=np.float32)[expected]

    np.testing.assert_array_equal(predict_labels(model, scores), expected)
