"""Classify image files with a trained model: `python -m tools.predict [--dataset D] IMAGE...`.

Each image (PNG, JPEG, ... of any size and colour) is turned into what the training data looks like: grayscale,
a light object on a dark background (photos with a light background are inverted), cut to the object and framed
as the dataset's images were (`data.<dataset>.framing`, tasks/lib/images.py), scaled to [0, 1]. An image with no
object in it is refused, not classified. Prints the top-3 classes with their probabilities.

The model: the production model (`models/<dataset>/production/`), `--model FILE`, or `--version V`: the model the
run of version V trained (a commit, as `make history` lists them, with its model's hash), read from DVC's cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.common.config import load_params
from tasks.common.errors import ImageFileError, PipelineError
from tasks.lib.images import to_dataset_pixels
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.normalize import normalize_images

__all__ = ["ImageFileError", "Prediction", "image_to_input", "predict_files", "main"]


def image_to_input(path: Path, framing: str = "box") -> np.ndarray:
    """A (28, 28) float32 array in [0, 1]: the image as the dataset holds it (tasks/lib/images.py; `framing` as the
    dataset's), normalized as the normalize stage does."""
    return normalize_images(to_dataset_pixels(path, framing=framing))


@dataclass(frozen=True)
class Prediction:
    file: Path
    top: list[tuple[str, float]]


def predict_files(model_file: Path, files: list[Path], class_names: tuple[str, ...], top_k: int = 3,
                  framing: str = "box") -> list[Prediction]:
    """Top-k classes of every file; raise ImageFileError listing every file that is missing, not an image, or
    blank."""
    from tasks.lib.inference import load_network

    inputs, problems = [], []
    for path in files:
        try:
            inputs.append(image_to_input(path, framing))
        except ImageFileError as error:
            problems.append(str(error))
    if problems:
        raise ImageFileError(f"{len(problems)} of {len(files)} files cannot be classified:\n  - "
                             + "\n  - ".join(problems))
    probabilities = load_network(model_file).predict(np.stack(inputs), verbose=0)
    return [Prediction(path, [(class_names[index], float(row[index])) for index in np.argsort(row)[::-1][:top_k]])
            for path, row in zip(files, probabilities)]


def _version_model(paths: DatasetPaths, version: str, scratch: Path) -> Path:
    """The ONNX model the run of `version` trained, fetched into `scratch`; says which on stderr."""
    from tasks.lib.model_versions import fetch, file_md5, resolve_commit

    commit = resolve_commit(paths.root, version)
    keras_file = fetch(paths.root, commit, str(paths.model_file.relative_to(paths.root)), scratch / "model.keras")
    model_file = fetch(paths.root, commit, str(paths.runtime_model_file.relative_to(paths.root)),
                       scratch / "model.onnx")
    print(f"model of version {commit[:10]} (md5 {file_md5(keras_file)[:8]}, as make history shows it)", file=sys.stderr)
    return model_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.predict", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--params", type=Path, default=Path(PARAMS_FILE))
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", type=Path, help="an ONNX model file the train stage wrote (default: models/"
                        "<dataset>/production/model.onnx, else models/<dataset>/model.onnx)")
    chosen.add_argument("--version", help="the model the run of this version trained (a commit `make history` lists)")
    arguments = parser.parse_args(argv)
    try:
        params = load_params(arguments.params)
        paths = DatasetPaths(Path.cwd(), arguments.dataset)
        dataset = params.dataset(arguments.dataset)
        with tempfile.TemporaryDirectory(prefix="predict-") as scratch:
            model_file = arguments.model or next(
                (path for path in (paths.production_runtime_model_file, paths.runtime_model_file) if path.exists()),
                paths.runtime_model_file)
            if arguments.version:
                model_file = _version_model(paths, arguments.version, Path(scratch))
            for prediction in predict_files(model_file, arguments.images, dataset.class_names, framing=dataset.framing):
                print(f"{prediction.file}: " + ", ".join(f"{name} {probability:.1%}"
                                                         for name, probability in prediction.top))
    except PipelineError as error:
        print(f"predict failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
