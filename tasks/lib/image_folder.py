"""Image-folder datasets: `<root>/{train,test}/<class>/*.png|*.jpg`, the layout of Keras'
`image_dataset_from_directory` and torchvision's `ImageFolder`.

A class's folder is its name with '/' written '-' (`T-shirt/top` -> `T-shirt-top`), or its index (`0`, `1`, ...).
Folder and class names are compared in Unicode's composed form (NFC): a zip made on macOS holds them decomposed.
Every image becomes what the model trains on through `tasks.lib.images.to_dataset_pixels`, the conversion that
predict uses too. Files whose name starts with '.' (`.DS_Store`, a copy tool's temporary file) are not read.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.common.errors import ImageFileError
from tasks.common.paths import IMAGE_SUFFIXES, SPLITS, class_folder_name
from tasks.lib.geometry import IMAGE_SIDE
from tasks.lib.images import to_dataset_pixels

# How many problems one error message lists before it gives the count of the rest.
PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class ImageFile:
    """A file in the layout: where it is, its split and its class index."""

    path: Path
    split: str
    label: int


@dataclass(frozen=True)
class Misplaced:
    """A file the layout has no place for, and why."""

    path: Path
    reason: str


def class_index_by_folder(class_names: tuple[str, ...]) -> dict[str, int]:
    """Folder name (NFC) -> class index. A class's own folder name wins over another class's index."""
    by_folder = {_composed(class_folder_name(name)): index for index, name in enumerate(class_names)}
    for index in range(len(class_names)):
        by_folder.setdefault(str(index), index)
    return by_folder


def _composed(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def scan_layout(root: Path, class_names: tuple[str, ...]) -> tuple[list[ImageFile], list[Misplaced]]:
    """Every image file under `root` in the layout (sorted by split, class and path), and every file that is not
    where the layout puts images. Files and folders whose name starts with '.' are skipped."""
    return place_files(root, list(_visible_files(root)), class_names)


def place_files(root: Path, files: list[Path], class_names: tuple[str, ...]) -> tuple[list[ImageFile], list[Misplaced]]:
    """`files` (under `root`) sorted into images in the layout (by split, class and path) and misplaced files."""
    by_folder = class_index_by_folder(class_names)
    expected = (f"a class folder ({', '.join(class_folder_name(name) for name in class_names)}) or a class index "
                f"0..{len(class_names) - 1}")
    found: list[ImageFile] = []
    misplaced: list[Misplaced] = []
    for path in sorted(files):
        parts = path.relative_to(root).parts
        if len(parts) != 3 or parts[0] not in SPLITS:
            misplaced.append(Misplaced(path, f"outside the layout: images go in {root}/{{train,test}}/<class>/"))
        elif _composed(parts[1]) not in by_folder:
            misplaced.append(Misplaced(path, f"unknown class folder {parts[1]!r}; expected {expected}"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            misplaced.append(Misplaced(path, f"suffix {path.suffix or '(none)'!r} is not an image suffix "
                                             f"({', '.join(IMAGE_SUFFIXES)})"))
        else:
            found.append(ImageFile(path, parts[0], by_folder[_composed(parts[1])]))
    found.sort(key=lambda image: (SPLITS.index(image.split), image.label, image.path))
    return found, misplaced


def _visible_files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def read_image_folder(root: Path, class_names: tuple[str, ...],
                      framing: str = "box") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's (count, 28, 28) uint8 images and (count,) uint8 labels from the image folder at `root`.

    Raises ImageFileError listing every problem at once: a missing or empty split folder, a file outside the
    layout or in an unknown class folder, a file that is not a readable image."""
    if not root.is_dir():
        raise ImageFileError(f"{root}: no such folder (data.<dataset>.local_dir); expected an image folder "
                             f"{root}/train/<class>/*.png and {root}/test/<class>/*.png")
    files, misplaced = scan_layout(root, class_names)
    problems = [f"{item.path}: {item.reason}" for item in misplaced]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        in_split = [image for image in files if image.split == split]
        if not in_split:
            problems.append(f"{root / split}: no images (expected {root / split}/<class>/*.png or *.jpg)")
        pixels = []
        for image in in_split:
            try:
                pixels.append(to_dataset_pixels(image.path, framing=framing))
            except ImageFileError as error:
                problems.append(str(error))
        if len(pixels) == len(in_split):
            arrays[split] = (np.stack(pixels) if pixels else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8),
                             np.array([image.label for image in in_split], dtype=np.uint8))
    if problems:
        raise ImageFileError(f"{root}: {len(problems)} problem(s) in the image folder:\n  - " + "\n  - ".join(
            problems[:PROBLEMS_SHOWN]) + (f"\n  ... and {len(problems) - PROBLEMS_SHOWN} more"
                                          if len(problems) > PROBLEMS_SHOWN else ""))
    return arrays
