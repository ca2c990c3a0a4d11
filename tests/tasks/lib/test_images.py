"""tasks/lib/images.py: any image file becomes a 28x28 uint8 image shaped like the training data."""

import numpy as np
import pytest
from PIL import Image

from tasks.common.errors import ImageFileError
from tasks.lib.images import to_dataset_pixels
from tests.conftest import real_fashion_images


def test_a_real_28x28_png_comes_back_pixel_for_pixel(tmp_path):
    images, _ = real_fashion_images(50)
    for row, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{row}.png")

    converted = np.stack([to_dataset_pixels(tmp_path / f"{row}.png") for row in range(50)])

    assert converted.dtype == np.uint8 and np.array_equal(converted, images)


def test_the_bytes_already_read_give_what_the_file_gives(tmp_path):
    images, _ = real_fashion_images(1)
    Image.fromarray(images[0]).save(tmp_path / "a.jpg", quality=90)

    from_bytes = to_dataset_pixels(tmp_path / "a.jpg", (tmp_path / "a.jpg").read_bytes())

    assert np.array_equal(from_bytes, to_dataset_pixels(tmp_path / "a.jpg"))
    assert np.abs(from_bytes.astype(int) - images[0]).mean() < 3  # JPEG is lossy, a little


def test_a_32x32_rgb_photo_dark_on_light_is_converted_not_refused(tmp_path):
    photo = np.full((32, 32, 3), 250, dtype=np.uint8)
    photo[8:24, 12:20] = (10, 20, 90)  # a dark object on a light background
    Image.fromarray(photo).save(tmp_path / "photo.png")

    pixels = to_dataset_pixels(tmp_path / "photo.png")

    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert pixels[0, 0] < 10 and pixels[14, 14] > 200  # inverted: a light object on a dark background


@pytest.mark.parametrize("content, says", [
    (b"", "the file is empty (0 bytes); expected a PNG or JPEG image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image PIL can read (PNG, JPEG, ...)"),
    (b"hello", "not an image PIL can read"),
])
def test_a_file_that_is_not_an_image_is_named_with_what_is_wrong(tmp_path, content, says):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)

    with pytest.raises(ImageFileError) as raised:
        to_dataset_pixels(bad)
    assert str(raised.value).startswith(f"{bad}: {says}")
    assert "\n" not in str(raised.value)


def test_a_truncated_png_is_named(tmp_path):
    images, _ = real_fashion_images(1)
    Image.fromarray(images[0]).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])

    with pytest.raises(ImageFileError, match=r"cut.png: not an image PIL can read"):
        to_dataset_pixels(tmp_path / "cut.png")
