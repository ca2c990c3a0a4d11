import re

import numpy as np
import pytest

from tasks.lib import idx
from tasks.common.errors import DataValidationError
from tasks.normalize import check_normalized, load_split, normalize_dataset, normalize_images, save_split
from tests.conftest import make_images


def _normalized(count=6, seed=0):
    images, labels = make_images(count, seed=seed)
    return images.astype(np.float32) / np.float32(255), labels


def test_normalize_dataset_writes_float32_splits_in_unit_range(tiny_dataset):
    result = normalize_dataset(tiny_dataset)

    assert result.dataset == "custom"
    assert result.shapes == {"train": (60, 28, 28), "test": (20, 28, 28)}
    for split, count in (("train", 60), ("test", 20)):
        raw_images = idx.read_images(tiny_dataset.raw_file(split, "images"))
        raw_labels = idx.read_labels(tiny_dataset.raw_file(split, "labels"))
        path = tiny_dataset.processed_dir / f"{split}.npz"
        with np.load(path, allow_pickle=False) as archive:
            assert sorted(archive.files) == ["images", "labels"]
            images, labels = archive["images"], archive["labels"]
        assert images.dtype == np.float32 and images.shape == (count, 28, 28)
        assert images.min() == 0.0 and images.max() == 1.0
        np.testing.assert_allclose(images, raw_images / 255.0, rtol=1e-6, atol=0)
        np.testing.assert_array_equal(np.rint(images * 255).astype(np.uint8), raw_images)
        np.testing.assert_array_equal(labels, raw_labels)
    assert sorted(path.name for path in tiny_dataset.processed_dir.iterdir()) == ["test.npz", "train.npz"]


def test_normalize_images_returns_new_array_and_leaves_input_alone():
    images, _ = make_images(5)
    before = images.copy()

    normalized = normalize_images(images)

    np.testing.assert_array_equal(images, before)
    assert images.dtype == np.uint8
    assert not np.shares_memory(normalized, images)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, before / 255.0, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_images_refuses_float_input(dtype):
    with pytest.raises(TypeError, match=f"normalize expects uint8 pixels, got dtype {np.dtype(dtype).name}$"):
        normalize_images(np.zeros((2, 28, 28), dtype=dtype))


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
