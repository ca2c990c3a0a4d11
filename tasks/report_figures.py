"""The report page's pictures, rendered to PNG in memory and inlined as data URIs (the page needs no other file).

Confusion-matrix heatmaps (counts and row-normalized), training curves with the stop epoch marked, a grid of
mistakes, and thumbnails of single test images.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from tasks.startup import import_large

import_large("matplotlib").use("Agg")  # files only, no display
import_large("matplotlib.pyplot")  # see tasks/startup.py
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

THUMBNAIL_SCALE = 3  # 28x28 -> 84x84, nearest neighbour, so pixels stay sharp


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def row_normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of each true class predicted as each class); empty rows stay 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)


def confusion_heatmap_png(matrix: np.ndarray, class_names: Sequence[str], normalized: bool) -> bytes:
    """Rows = true class, columns = predicted class; cells show counts or row shares."""
    values = row_normalized(matrix) if normalized else matrix
    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else max(int(matrix.max()), 1))
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title("Row-normalized (share of each true class)" if normalized else "Counts")
    darkest = values.max() if values.size else 0
    for true_index, predicted_index in np.ndindex(values.shape):
        value = values[true_index, predicted_index]
        axes.text(predicted_index, true_index, f"{value:.2f}" if normalized else str(int(value)), ha="center",
                  va="center", fontsize=7, color="white" if value > darkest / 2 else "black")
    return _png(figure)


def training_curves_png(history: dict[str, list[float]], stop_epoch: int, stopped_by_threshold: bool,
                        monitor: str, threshold: float) -> bytes:
    """Loss and accuracy per epoch, train and validation; the stop epoch and the monitored threshold marked."""
    epochs = history["epoch"]
    figure, axes_pair = plt.subplots(1, 2, figsize=(11, 4))
    stop_label = (f"threshold reached (epoch {stop_epoch})" if stopped_by_threshold
                  else f"epoch limit (epoch {stop_epoch})")
    for axes, metric in zip(axes_pair, ("loss", "accuracy")):
        axes.plot(epochs, history[metric], marker="o", label=f"train {metric}")
        axes.plot(epochs, history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        axes.axvline(stop_epoch, color="grey", linestyle="--", label=stop_label)
        if monitor.endswith(metric):
            axes.axhline(threshold, color="red", linestyle=":", label=f"threshold {threshold:g} on {monitor}")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return _png(figure)


def misclassified_grid_png(images: np.ndarray, true_names: Sequence[str], predicted_names: Sequence[str]) -> bytes:
    """Test images in a grid of up to 5 columns, each titled 'true -> predicted'."""
    count = max(len(images), 1)
    columns = min(5, count)
    rows = int(np.ceil(count / columns))
    figure, axes_grid = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for position, axes in enumerate(axes_grid.flat):
        axes.axis("off")
        if position < len(images):
            axes.imshow(images[position], cmap="gray_r", vmin=0, vmax=1)
            axes.set_title(f"{true_names[position]}\n-> {predicted_names[position]}", fontsize=8)
    figure.suptitle("Most confident mistakes on the test set (true -> predicted)")
    return _png(figure)


def thumbnail_png(image: np.ndarray) -> bytes:
    """One test image in [0, 1] as dark ink on white (like the misclassified grid), enlarged."""
    from PIL import Image

    pixels = np.clip(255 - np.rint(np.asarray(image, dtype=float) * 255), 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels)  # 2-D uint8: grayscale ("L")
    picture = picture.resize((picture.width * THUMBNAIL_SCALE, picture.height * THUMBNAIL_SCALE), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    # No metadata: the same data gives the same bytes.
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
