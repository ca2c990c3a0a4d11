
import numpy as np
import pytest

from tasks.lib import idx
from tasks.normalize import normalize_dataset, normalize_images
from tests.conftest import make_images


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
