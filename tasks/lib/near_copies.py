"""Near-copies: an image that is another one re-encoded (JPEG), moved by a pixel or two, or made a little brighter
or darker. Ingest refuses a new image that is a near-copy of one in the other split (train/test leakage) or in its
own (a duplicate); an exact copy is caught before, by the SHA-256 of its pixels.

The score of a pair is the largest Pearson correlation of their pixels over relative shifts of up to MAX_SHIFT
pixels each way, each computed on the central 24x24 square of one image and the part of the other that lands on it
once moved (a garment that fills the frame loses its edge when moved; the pixels it lost are not counted against
it), after a Gaussian blur of
BLUR_SIGMA px (JPEG's 8x8 block noise is finer than that). A brightness change is a scale of the pixels, which a
correlation does not see. Perceptual hashes were measured and do not separate Fashion-MNIST (issue 30): pHash at
distance 0 matches 1.25 % of distinct test images, and a 1-pixel shift moves it by a median of 10 bits.

How near is a copy (`ingest.near_copy_correlation`, 0.999) was set on real Fashion-MNIST, the hardest of our data
(many plain garments look alike): a round value above the 99.9th percentile (0.9983) of the best scores of training
images 0-9999 against the 10,000 test images, which refuses 2 of them. `make bench-gates` (target 16) reports the
rate at which training images 10000-19999, which chose nothing, are refused at it, and the share of moved,
brightened and JPEG-re-encoded test images it catches (benchmarks/data_gates.py).

The cost is one matrix product per shift (25 of them): for each new image, 25 x 576 multiply-adds per image it is
compared with. `make bench-gates` prints the images per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from tasks.lib.geometry import IMAGE_SIDE

MAX_SHIFT = 2
BLUR_SIGMA = 1.0
BATCH = 256  # new images per matrix product: BATCH x (images compared with) float32 scores at a time


@dataclass(frozen=True)
class Matches:
    """For each new image: the index of the image it is nearest to (-1 when there was none to compare with), the
    correlation (-1.0 then), and the shift (rows, columns) that moves the new image onto it."""

    index: np.ndarray
    correlation: np.ndarray
    shift: np.ndarray


def best_matches(new: np.ndarray, reference: np.ndarray) -> Matches:
    """Each of `new` (n, 28, 28) against every one of `reference` (m, 28, 28): its nearest, by the score above."""
    count = len(new)
    index, correlation = np.full(count, -1, np.int64), np.full(count, -1.0, np.float32)
    shift = np.zeros((count, 2), np.int64)
    if not count or not len(reference):
        return Matches(index, correlation, shift)
    under = _features(reference, 0, 0)
    for rows, columns in _shifts():
        moved = _features(new, rows, columns)
        for start in range(0, count, BATCH):
            scores = moved[start:start + BATCH] @ under.T
            nearest = scores.argmax(axis=1)
            found = scores[np.arange(len(nearest)), nearest]
            better = found > correlation[start:start + BATCH]
            chosen = np.flatnonzero(better) + start
            index[chosen], correlation[chosen] = nearest[better], found[better]
            shift[chosen] = (rows, columns)
    return Matches(index, correlation, shift)


def best_earlier(images: np.ndarray) -> Matches:
    """Each of `images` against the ones before it (a drop's own images, in order): its nearest among them."""
    count = len(images)
    index, correlation = np.full(count, -1, np.int64), np.full(count, -1.0, np.float32)
    shift = np.zeros((count, 2), np.int64)
    if count < 2:
        return Matches(index, correlation, shift)
    under = _features(images, 0, 0)
    for rows, columns in _shifts():
        moved = _features(images, rows, columns)
        for start in range(1, count, BATCH):
            end = min(start + BATCH, count)
            scores = moved[start:end] @ under[:end - 1].T
            scores[np.arange(start, end)[:, None] <= np.arange(end - 1)[None, :]] = -1.0  # only the ones before
            nearest = scores.argmax(axis=1)
            found = scores[np.arange(len(nearest)), nearest]
            better = found > correlation[start:end]
            chosen = np.flatnonzero(better) + start
            index[chosen], correlation[chosen] = nearest[better], found[better]
            shift[chosen] = (rows, columns)
    return Matches(index, correlation, shift)


def describe_shift(shift: np.ndarray | tuple[int, int]) -> str:
    """`moved 1 px down, 2 px left`, or `not moved`."""
    rows, columns = (int(value) for value in shift)
    parts = [f"{abs(rows)} px {'down' if rows > 0 else 'up'}" if rows else "",
             f"{abs(columns)} px {'right' if columns > 0 else 'left'}" if columns else ""]
    said = ", ".join(part for part in parts if part)
    return f"moved {said}" if said else "not moved"


def _shifts() -> list[tuple[int, int]]:
    steps = range(-MAX_SHIFT, MAX_SHIFT + 1)
    return [(rows, columns) for rows in steps for columns in steps]


def _features(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The part of each image that lands on the other image's central (28 - 2 MAX_SHIFT)-pixel square once moved
    `rows` down and `columns` right, blurred, mean-centred and scaled to length 1 (a dot product of two is their
    Pearson correlation). Within MAX_SHIFT the part is inside the frame: a moved copy loses only pixels outside it."""
    side = IMAGE_SIDE - 2 * MAX_SHIFT
    top, left = MAX_SHIFT - rows, MAX_SHIFT - columns
    window = images[:, top:top + side, left:left + side].astype(np.float32)
    blur = _blur(side)
    flat = (blur @ window @ blur.T).reshape(len(images), -1)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)  # a flat image correlates 0 with any
    return flat


@cache
def _blur(size: int) -> np.ndarray:
    """The (size, size) matrix of a Gaussian blur along one axis (zero outside the part, radius 4 sigma)."""
    radius = int(4 * BLUR_SIGMA + 0.5)
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    weights = np.exp(-0.5 * (offsets / BLUR_SIGMA) ** 2) * (np.abs(offsets) <= radius)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
