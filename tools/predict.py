"""Classify image files with a trained model: `python -m tools.predict [--dataset D] IMAGE...`.

Each image (PNG, JPEG, ... of any size and colour) is turned into what the training data looks like: grayscale,
a light object on a dark background (photos with a light background are inverted), cut to the object and framed
as the dataset's images were (`data.<dataset>.framing`, tasks/lib/images.py), scaled to [0, 1]. An image with no
object in it is refused, not classified. Prints the top-3 classes with their probabilities, per file: a file that
cannot be classified gets one line on stderr saying why, the others their classes, and the exit code is 1 when any
file could not be classified.

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
from tasks.lib.images import normalize_images, to_dataset_pixels
from tasks.common.paths import PARAMS_FILE, DatasetPaths

__all__ = ["ImageFileError", "Prediction", "image_to_input", "predict_files", "main"]


def image_to_input(path: Path, framing: str = "box") -> np.ndarray:
    """A (28, 28) float32 array in [0, 1]: the image as the dataset holds it (tasks/lib/images.py; `framing` as the
    dataset's), normalized as the normalize stage does."""
    return normalize_images(to_dataset_pixels(path, framing=framing))


@dataclass(frozen=True)
class Prediction:
    """One file's top classes, or, for a file that cannot be classified (missing, not an image, blank, too large),
    `problem`: one line naming the file and why."""

    file: Path
    top: list[tuple[str, float]] | None = None
    problem: str | None = None


def predict_files(model_file: Path, files: list[Path], class_names: tuple[str, ...], top_k: int = 3,
                  framing: str = "box") -> list[Prediction]:
    """One Prediction per file, in order: the top-k classes of each file that can be classified, the problem of
    each one that cannot. The model is loaded only when some file can be classified."""
    from tasks.lib.inference import load_network

    inputs: dict[int, np.ndarray] = {}
    problems: dict[int, str] = {}
    for position, path in enumerate(files):
        try:
            inputs[position] = image_to_input(path, framing)
        except ImageFileError as error:
            problems[position] = " ".join(str(error).split())
    rows = {}
    if inputs:
        probabilities = load_network(model_file).predict(np.stack(list(inputs.values())), verbose=0)
        rows = dict(zip(inputs, probabilities))
    return [Prediction(path, [(class_names[index], float(rows[position][index]))
                              for index in np.argsort(rows[position])[::-1][:top_k]])
            if position in rows else Prediction(path, problem=problems[position])
            for position, path in enumerate(files)]


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
            predictions = predict_files(model_file, arguments.images, dataset.class_names, framing=dataset.framing)
    except PipelineError as error:
        print(f"predict failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    for prediction in predictions:
        if prediction.top is None:
            print(f"cannot be classified: {prediction.problem}", file=sys.stderr)
        else:
            print(f"{prediction.file}: " + ", ".join(f"{name} {probability:.1%}"
                                                     for name, probability in prediction.top), flush=True)
    failed = sum(prediction.top is None for prediction in predictions)
    if failed:
        print(f"predict: {failed} of {len(predictions)} files cannot be classified (each named above); "
              f"{len(predictions) - failed} classified", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
