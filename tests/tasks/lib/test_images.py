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
    # In words: PIL's own message named its buffer, "cannot identify image file <_io.BytesIO object at 0x...>".
    (b"hello", "not an image PIL can read (PNG, JPEG, ...): its 5 bytes, starting b'hello', are no image format "
               "PIL knows"),
])
def test_a_file_that_is_not_an_image_is_named_with_what_is_wrong(tmp_path, content, says):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)

    with pytest.raises(ImageFileError) as raised:
        to_dataset_pixels(bad)
    assert str(raised.value).startswith(f"{bad}: {says}")
    assert "\n" not in str(raised.value) and "object at 0x" not in str(raised.value)


def test_a_truncated_png_is_named(tmp_path):
    images, _ = real_fashion_images(1)
    Image.fromarray(images[0]).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])

    with pytest.raises(ImageFileError, match=r"cut.png: not an image PIL can read"):
        to_dataset_pixels(tmp_path / "cut.png")


def photo_of(image: np.ndarray, side: int, margin: int) -> Image.Image:
    """A dataset image as a product photo: dark object on white, upscaled to `side` - 2 x `margin`, white margin."""
    inner = Image.fromarray(255 - image).resize((side - 2 * margin,) * 2, Image.Resampling.BICUBIC)
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(inner, (margin, margin))
    return canvas


def one_per_class(count: int = 400) -> np.ndarray:
    images, labels = real_fashion_images(count)
    return np.stack([images[np.flatnonzero(labels == label)[0]] for label in range(10)])


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.mark.parametrize("margin", [0, 30])
def test_a_product_photo_with_a_white_margin_is_cut_to_the_object_and_framed_as_fashion_mnist(tmp_path, margin):
    """Issue 16: 300x300 photos with a 30 px margin were classified 6 of 10 right (the object shrank to 22 px):
    cut to its box and fitted to 28 px, each comes back close to the dataset image it was made from."""
    for label, image in enumerate(one_per_class()):
        photo_of(image, 300, margin).save(tmp_path / f"{label}.png")

        pixels = to_dataset_pixels(tmp_path / f"{label}.png", framing="box")

        assert correlation(pixels, image) > 0.85, (label, correlation(pixels, image))  # before: 0.31-0.82 at 30 px


def test_mass_framing_fits_a_digit_to_20_pixels_centred_by_its_centre_of_mass(tmp_path):
    digit = np.zeros((28, 28), np.uint8)
    digit[2:26, 10:14] = 255  # a tall "1", off-centre in its photo below
    photo = Image.new("L", (400, 300), 255)
    photo.paste(Image.fromarray(255 - digit[2:26, 10:14]).resize((40, 240)), (40, 30))
    photo.save(tmp_path / "one.png")

    pixels = to_dataset_pixels(tmp_path / "one.png", framing="mass")

    rows, columns = np.nonzero(pixels > 127)
    assert rows.max() - rows.min() + 1 in (19, 20)  # the longest side is 20, as MNIST's digits
    centre = np.average(np.indices(pixels.shape).reshape(2, -1), axis=1, weights=pixels.ravel().astype(float))
    assert np.allclose(centre, (13.5, 13.5), atol=0.6), centre


@pytest.mark.parametrize("fill", [255, 0, 128])
def test_a_blank_image_is_refused_saying_there_is_no_object(tmp_path, fill):
    noise = np.random.default_rng(0).integers(0, 10, (300, 300))
    Image.fromarray(np.clip(fill + noise - 5, 0, 255).astype(np.uint8)).save(tmp_path / "blank.png")

    with pytest.raises(ImageFileError) as raised:
        to_dataset_pixels(tmp_path / "blank.png")
    assert str(raised.value).startswith(f"{tmp_path / 'blank.png'}: no object found: every pixel is within 32 grey")
    assert "\n" not in str(raised.value)
