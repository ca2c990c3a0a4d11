"""One image file -> what the model trains on: 28x28 uint8 grayscale, a light object on a dark background.

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

IMAGE_SIDE = 28
# Raised whenever what `to_dataset_pixels` returns for the same file changes.
CONVERSION_VERSION = 1
# Larger images are refused before they are decoded: a 48-megapixel phone photo passes; a 12000x12000 PNG took
# 1.46 GB and 5.4 s, and a 20000x20000 one ended in PIL's DecompressionBombError.
MAX_IMAGE_PIXELS = 50_000_000


def to_dataset_pixels(path: Path, content: bytes | None = None) -> np.ndarray:
    """A (28, 28) uint8 array of `path` (or of `content`, its bytes already read) shaped like the training images:
    grayscale, inverted when the background is light, fitted into 28x28 with its aspect ratio kept.

    Raises ImageFileError naming the file: missing, empty, not an image PIL decodes, or too large."""
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
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageFileError(f"{path}: not an image PIL can read (PNG, JPEG, ...): {error}") from None
    if _background_is_light(pixels):
        pixels = 255 - pixels
    if pixels.shape == (IMAGE_SIDE, IMAGE_SIDE):
        return pixels
    fitted = ImageOps.pad(Image.fromarray(pixels), (IMAGE_SIDE, IMAGE_SIDE), color=0)
    return np.asarray(fitted, dtype=np.uint8)


def _check_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageFileError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels; at most "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} are accepted (resize it first, e.g. to 1000x1000)")


def _background_is_light(pixels: np.ndarray) -> bool:
    """The border's median above 127 (as np.median computes it, in about half its time on 108 values: 3-5 us against 8-9, measured)."""
    border = np.sort(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])).astype(np.int32)
    return int(border[(len(border) - 1) // 2]) + int(border[len(border) // 2]) > 254
