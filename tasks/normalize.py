"""Stage 3, normalize: pixels / 255 as float32 in [0, 1], saved as `.npz` (loaded without pickle) and checked again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.lib import idx
from tasks.common.errors import DataValidationError
from tasks.common.fileio import atomic_path, load_arrays
from tasks.common.paths import SPLITS, DatasetPaths
from tasks.common.startup import exit_process

logger = logging.getLogger(__name__)
PIXEL_SCALE = np.float32(255.0)
# Data already divided by 255 has a maximum of at most 1/255: a sign it was normalized twice.
# The margin covers float32 rounding (255 / 255 / 255 in float32 is a hair above 1/255 in float64).
_TWICE_NORMALIZED_MAX = 1.0 / 255.0 + 1e-6


@dataclass(frozen=True)
class NormalizeResult:
    dataset: str
    shapes: dict[str, tuple[int, ...]]


def normalize_images(images: np.ndarray) -> np.ndarray:
    """Return a new float32 array in [0, 1]; the input (uint8) is not modified."""
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got dtype {images.dtype}")
    normalized = images.astype(np.float32)
    normalized /= PIXEL_SCALE  # in place: the same division, one 190 MB array fewer to allocate
    return normalized


def check_normalized(images: np.ndarray, labels: np.ndarray, source: Path | str) -> None:
    """Refuse NaN, values outside [0, 1], float data normalized twice, wrong shapes or mismatched labels."""
    problems = []
    if images.dtype != np.float32:
        problems.append(f"dtype {images.dtype} where float32 was expected")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        problems.append(f"shape {images.shape} where (count, 28, 28) was expected")
    if len(labels) != len(images):
        problems.append(f"{len(images)} images but {len(labels)} labels")
    if images.size:
        nan_rows = np.flatnonzero(np.isnan(images.reshape(len(images), -1)).any(axis=1))
        if nan_rows.size:
            problems.append(f"NaN in {nan_rows.size} images, e.g. rows {nan_rows[:5].tolist()}")
        low, high = float(np.nanmin(images)), float(np.nanmax(images))
        if low < 0 or high > 1:
            problems.append(f"values in [{low:g}, {high:g}] where [0, 1] was expected")
        elif 0 < high <= _TWICE_NORMALIZED_MAX:
            problems.append(f"max value {high:g} <= 1/255: the data looks normalized twice")
    if problems:
        raise DataValidationError(f"{source}: normalized data failed its checks: " + "; ".join(problems))


def save_split(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as stream:
            np.savez(stream, images=images, labels=labels)


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load a normalized split (pickle refused) and check it again."""
    arrays = load_arrays(path, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    check_normalized(images, labels, path)
    return images, labels


def normalize_dataset(paths: DatasetPaths) -> NormalizeResult:
    """Write `data/processed/<dataset>/{train,test}.npz` from the validated raw IDX files."""
    shapes = {}
    for split in SPLITS:
        images = normalize_images(idx.read_images(paths.raw_file(split, "images")))
        labels = idx.read_labels(paths.raw_file(split, "labels")).copy()
        check_normalized(images, labels, paths.processed_file(split))
        save_split(paths.processed_file(split), images, labels)
        shapes[split] = images.shape
        logger.info("%s/%s: %s float32 images in [0, 1] -> %s", paths.dataset, split, images.shape,
                    paths.processed_file(split))
    return NormalizeResult(paths.dataset, shapes)


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("normalize", argv, lambda paths, params: normalize_dataset(paths))


if __name__ == "__main__":
    exit_process(main())
