"""Stage 4, normalize: pixels / 255 as float32 in [0, 1], saved as `.npz` (loaded without pickle) and checked again.

The data is the whole dataset: the downloaded files, then every ingested drop (tasks/lib/drops.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.common.paths import SPLITS, DatasetPaths
from tasks.lib.drops import read_split
from tasks.lib.images import normalize_images
from tasks.lib.outputs import check_normalized, save_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NormalizeResult:
    dataset: str
    shapes: dict[str, tuple[int, ...]]


def normalize_dataset(paths: DatasetPaths) -> NormalizeResult:
    """Write `data/processed/<dataset>/{train,test}.npz` from the validated dataset."""
    shapes = {}
    for split in SPLITS:
        raw_images, labels = read_split(paths, split)
        images = normalize_images(raw_images)
        del raw_images
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
    raise SystemExit(main())
