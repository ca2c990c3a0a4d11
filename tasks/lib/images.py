"""One image file -> what the model trains on: 28x28 uint8 grayscale, a light object on a dark background.

An image larger than 28x28 is framed the way its dataset was made (`data.<dataset>.framing`): the object's bounding
box is cut out and fitted with its aspect ratio kept, then
- `box` (Fashion-MNIST: "trimmed, the longest edge resized to 28, put to the centre of the canvas"): fitted to
  28x28 and centred by its box;
- `mass` (MNIST: "size normalized to fit a 20x20 box, centred in 28x28 by the centre of mass of the pixels"):
  fitted to 20x20 and placed so that its centre of mass is the canvas' centre.
A 28x28 image is taken as already framed. An image with no object (every pixel within MIN_CONTRAST grey levels of
the background) is refused: a blank image is not classified as whatever class is nearest.

The one implementation of the conversion: the `images` dataset source (tasks/lib/image_folder.py) and predict
(tools/predict.py) both call `to_dataset_pixels`, so a user's photo is seen as the training images were.
`CONVERSION_VERSION` names this conversion; data made by it records the version, so a later change can be told
apart from (and rebuild) what an earlier one made.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from tasks.common.errors import ImageFileError
from tasks.lib.geometry import IMAGE_SIDE

# Raised whenever what `to_dataset_pixels` returns for the same file changes.
CONVERSION_VERSION = 2  # 2: cut to the object's box and framed per dataset; blank images refused
# How each dataset's images were made (the `framing` param): the side the object is fitted to, and how it is centred.
FRAMINGS = {"box": (28, "box"), "mass": (20, "mass")}
# An object differs from the background by at least this many grey levels; its box holds every pixel more than
# OBJECT_LEVEL above the background (JPEG noise stays below; a higher level cut faint edges off real objects).
MIN_CONTRAST = 32
OBJECT_LEVEL = 8
# Larger images are refused before they are decoded: a 48-megapixel phone photo passes; a 12000x12000 PNG took
# 1.46 GB and 5.4 s, and a 20000x20000 one ended in PIL's DecompressionBombError.
MAX_IMAGE_PIXELS = 50_000_000


PIXEL_SCALE = np.float32(255.0)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """What the model reads (the normalize stage's, and ingest's and predict's from the same function): a new
    float32 array in [0, 1]; the input (uint8) is not modified."""
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got dtype {images.dtype}")
    normalized = images.astype(np.float32)
    normalized /= PIXEL_SCALE  # in place: the same division, one 190 MB array fewer to allocate
    return normalized


def to_dataset_pixels(path: Path, content: bytes | None = None, framing: str = "box") -> np.ndarray:
    """A (28, 28) uint8 array of `path` (or of `content`, its bytes already read) shaped like the training images:
    grayscale, inverted when the background is light, the object framed as `framing` says (see above).

    Raises ImageFileError naming the file: missing, empty, not an image PIL decodes, too large, or blank."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        content = path.read_bytes() if content is None else content
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    if not content:
        raise ImageFileError(f"{path}: the file is empty (0 bytes); expected a PNG or JPEG image")
    try:
        with warnings.catch_warnings():  # PIL warns past its own limit; the size is checked here instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(content))  # reads the header only
        with opened:
            _check_size(path, *opened.size)
            # A PNG carries an orientation only in an EXIF chunk; reading the EXIF of every PNG was half the cost of
            # a 28x28 one (54 of 94 us, measured). Every other format is turned upright as its EXIF says.
            needs_turning = opened.format != "PNG" or "exif" in opened.info
            upright = ImageOps.exif_transpose(opened) if needs_turning else opened
            gray = upright if upright.mode == "L" else upright.convert("L")
            pixels = np.asarray(gray, dtype=np.uint8)
    except Image.DecompressionBombError as error:  # PIL's own guard, at twice its limit: met before ours
        raise ImageFileError(f"{path}: too large: {error}; at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are "
                             "accepted (resize it first, e.g. to 1000x1000)") from None
    except UnidentifiedImageError:  # PIL's message names its buffer object, not the file
        raise ImageFileError(f"{path}: not an image PIL can read (PNG, JPEG, ...): its {len(content)} bytes, starting "
                             f"{content[:8]!r}, are no image format PIL knows") from None
    except (OSError, SyntaxError) as error:
        raise ImageFileError(f"{path}: not an image PIL can read (PNG, JPEG, ...): {error}") from None
    if _background_is_light(pixels):
        pixels = 255 - pixels
    box = _object_box(pixels)
    if box is None:
        raise ImageFileError(f"{path}: no object found: every pixel is within {MIN_CONTRAST} grey levels of the "
                             f"background (found {int(pixels.min())}..{int(pixels.max())}); a blank image is not "
                             "classified")
    if pixels.shape == (IMAGE_SIDE, IMAGE_SIDE):
        return pixels
    return frame_object(pixels[box], framing)


def _object_box(pixels: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns holding the object (light on dark), or None when there is none."""
    background = int(_border_median(pixels))
    contrast = int(pixels.max()) - background
    if contrast < MIN_CONTRAST:
        return None
    mask = pixels > background + OBJECT_LEVEL
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def frame_object(cut: np.ndarray, framing: str) -> np.ndarray:
    """The object `cut` to its bounding box, fitted to its dataset's side with the aspect ratio kept, on a 28x28
    black canvas: centred by its box (`box`) or by its centre of mass (`mass`)."""
    from PIL import Image

    side, centring = FRAMINGS[framing]
    height, width = cut.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(Image.fromarray(cut).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
    if centring == "box":
        top, left = (IMAGE_SIDE - fitted.shape[0]) // 2, (IMAGE_SIDE - fitted.shape[1]) // 2
    else:
        weights = fitted.astype(np.float64)
        total = weights.sum() or 1.0
        row_centre = (weights.sum(axis=1) * np.arange(fitted.shape[0])).sum() / total
        column_centre = (weights.sum(axis=0) * np.arange(fitted.shape[1])).sum() / total
        top = int(np.clip(round((IMAGE_SIDE - 1) / 2 - row_centre), 0, IMAGE_SIDE - fitted.shape[0]))
        left = int(np.clip(round((IMAGE_SIDE - 1) / 2 - column_centre), 0, IMAGE_SIDE - fitted.shape[1]))
    canvas = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    canvas[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
    return canvas


def _check_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageFileError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels; at most "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} are accepted (resize it first, e.g. to 1000x1000)")


def _background_is_light(pixels: np.ndarray) -> bool:
    """The border's median above 127."""
    return _border_median(pixels) > 127


def _border_median(pixels: np.ndarray) -> float:
    """The median of the outermost pixels (as np.median computes it, in about half its time on 108 values: 3-5 us
    against 8-9, measured)."""
    border = np.sort(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])).astype(np.int32)
    return (int(border[(len(border) - 1) // 2]) + int(border[len(border) // 2])) / 2
