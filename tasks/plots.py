"""PNG pictures for people: a labelled confusion-matrix heatmap and a grid of misclassified test images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tasks.fileio import atomic_path  # noqa: E402


def save_confusion_heatmap(matrix: np.ndarray, class_names: tuple[str, ...], title: str, path: Path) -> None:
    """Counts in each cell, rows = true class, columns = predicted class."""
    figure, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(title)
    darkest = matrix.max() if matrix.size else 0
    for true_index, predicted_index in np.ndindex(matrix.shape):
        count = matrix[true_index, predicted_index]
        axes.text(predicted_index, true_index, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > darkest / 2 else "black")
    figure.tight_layout()
    _save(figure, path)


def save_misclassified_grid(images: np.ndarray, true_labels: np.ndarray, predicted_labels: np.ndarray,
                            class_names: tuple[str, ...], path: Path) -> None:
    """Up to len(images) images, each titled 'true -> predicted'."""
    count = max(len(images), 1)
    columns = min(5, count)
    rows = int(np.ceil(count / columns))
    figure, axes_grid = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for position, axes in enumerate(axes_grid.flat):
        axes.axis("off")
        if position < len(images):
            axes.imshow(images[position], cmap="gray_r", vmin=0, vmax=1)
            axes.set_title(f"{class_names[true_labels[position]]}\n-> {class_names[predicted_labels[position]]}",
                           fontsize=8)
    figure.suptitle("Misclassified test images (true -> predicted)")
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    with atomic_path(path) as tmp_path:
        figure.savefig(tmp_path, format="png", dpi=100)
    plt.close(figure)
