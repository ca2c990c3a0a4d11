"""Classify image files with a trained model: `python -m tools.predict [--dataset D] IMAGE...`.

Each image (PNG, JPEG, ... of any size and colour) is turned into what the training data looks like: grayscale,
a light object on a dark background (photos with a light background are inverted), fitted into 28x28 with its
aspect ratio kept, scaled to [0, 1]. Prints the top-3 classes with their probabilities.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.common.config import load_params
from tasks.common.errors import PipelineError
from tasks.common.paths import PARAMS_FILE, DatasetPaths

IMAGE_SIDE = 28
# Larger images are refused before they are decoded: a 48-megapixel phone photo passes; a 12000x12000 PNG took
# 1.46 GB and 5.4 s, and a 20000x20000 one ended in PIL's DecompressionBombError.
MAX_IMAGE_PIXELS = 50_000_000


class ImageFileError(PipelineError, ValueError):
    """A file given to predict is missing or is not an image."""


@dataclass(frozen=True)
class Prediction:
    file: Path
    top: list[tuple[str, float]]


def image_to_input(path: Path) -> np.ndarray:
    """A (28, 28) float32 array in [0, 1] shaped like the training images."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns past its own limit; the size is checked here instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)  # reads the header only
        with opened:
            _check_size(path, *opened.size)
            gray = ImageOps.exif_transpose(opened).convert("L")
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except Image.DecompressionBombError as error:  # PIL's own guard, at twice its limit: met before ours
        raise ImageFileError(f"{path}: too large: {error}; at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are "
                             "accepted (resize it first, e.g. to 1000x1000)") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ImageFileError(f"{path}: not an image PIL can read (PNG, JPEG, ...): {error}") from None
    pixels = np.asarray(gray, dtype=np.float32)
    if _background_is_light(pixels):
        pixels = 255.0 - pixels
    fitted = ImageOps.pad(Image.fromarray(pixels.astype(np.uint8)), (IMAGE_SIDE, IMAGE_SIDE), color=0)
    return np.asarray(fitted, dtype=np.float32) / 255.0


def _check_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageFileError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels; at most "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} are accepted (resize it first, e.g. to 1000x1000)")


def _background_is_light(pixels: np.ndarray) -> bool:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(np.median(border)) > 127


def predict_files(model_file: Path, files: list[Path], class_names: tuple[str, ...], top_k: int = 3) -> list[Prediction]:
    """Top-k classes of every file; raise ImageFileError listing every file that is missing or not an image."""
    from tasks.lib.inference import load_network

    inputs, problems = [], []
    for path in files:
        try:
            inputs.append(image_to_input(path))
        except ImageFileError as error:
            problems.append(str(error))
    if problems:
        raise ImageFileError(f"{len(problems)} of {len(files)} files cannot be classified:\n  - "
                             + "\n  - ".join(problems))
    probabilities = load_network(model_file).predict(np.stack(inputs), verbose=0)
    return [Prediction(path, [(class_names[index], float(row[index])) for index in np.argsort(row)[::-1][:top_k]])
            for path, row in zip(files, probabilities)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.predict", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE))
    parser.add_argument("--model", type=Path, help="model file (default: models/<dataset>/production/model.keras, "
                                                     "else models/<dataset>/model.keras)")
    arguments = parser.parse_args(argv)
    try:
        params = load_params(arguments.params)
        paths = DatasetPaths(Path.cwd(), arguments.dataset)
        model_file = arguments.model or next(
            (path for path in (paths.production_model_file, paths.model_file) if path.exists()), paths.model_file)
        for prediction in predict_files(model_file, arguments.images, params.dataset(arguments.dataset).class_names):
            print(f"{prediction.file}: " + ", ".join(f"{name} {probability:.1%}" for name, probability in prediction.top))
    except PipelineError as error:
        print(f"predict failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
