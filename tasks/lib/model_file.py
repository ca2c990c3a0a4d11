"""The trained model as a reproducible `.keras` file (the same weights give the same bytes), and its export for
ONNX Runtime.

Keras' `model.save` stamps three things that change on every save: `date_saved` in `metadata.json`, Python
object ids (`shared_object_id`) in `config.json`, and the write time of each zip member. With them, every
retraining changes the file's hash even when training is deterministic, so DVC reruns evaluate, promote and
report for an identical model, and `dvc.lock` differs between clones. `save_model` writes through Keras and
then rewrites the archive without them; what Keras reads back is unchanged.
"""

from __future__ import annotations

import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any

from tasks.common.fileio import atomic_path

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can record
_UNSTABLE_METADATA = ("date_saved",)


def save_model_files(model, keras_path: Path, runtime_path: Path) -> None:
    """The `.keras` archive and the ONNX export, each written under a temporary name and renamed into place only once
    both are complete: a crash while writing leaves both files as they were."""
    with atomic_path(keras_path) as keras_tmp, atomic_path(runtime_path) as runtime_tmp:
        _write_keras(model, keras_tmp)
        _write_onnx(model, runtime_tmp)


def save_model(model, path: Path) -> None:
    """Save `model` to `path` atomically, as a `.keras` archive whose bytes depend only on the model."""
    with atomic_path(path) as tmp_path:
        _write_keras(model, tmp_path)


def _write_keras(model, path: Path) -> None:
    model.save(path)
    make_reproducible(path)


def export_runtime_model(model, path: Path) -> None:
    """Export `model` for ONNX Runtime (tasks/lib/inference.py) to `path` atomically, with Keras' own
    `Model.export(format="onnx")`, then give its tensors and nodes stable names: the same weights give the same
    bytes (tests/tasks/lib/test_model_file.py)."""
    with atomic_path(path) as tmp_path:
        _write_onnx(model, tmp_path)


def _write_onnx(model, path: Path) -> None:
    import onnx

    # tf2onnx logs its versions, opset and optimizer passes at INFO and warns of its own use of numpy: the stage
    # prints its own lines only (its log shows the export's outcome).
    converter_logger = logging.getLogger("tf2onnx")
    level = converter_logger.level
    converter_logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format="onnx", verbose=False)
    finally:
        converter_logger.setLevel(level)
    exported = onnx.load(str(path))
    canonicalize_names(exported.graph)
    path.write_bytes(exported.SerializeToString(deterministic=True))


def canonicalize_names(graph) -> None:
    """Rename an exported ONNX graph's tensors and nodes by their order in the graph, in place.

    tf2onnx names the constants it folds from a Python set's iteration order (`const_axes__9` in one process,
    `const_axes__12` in the next), and the input after Keras' per-process tensor counter (`keras_tensor_15`). The
    graph itself is the same: its nodes come in the same order. The input becomes `images`, the output
    `probabilities`, every other tensor `t<n>` in order of first use, every node `<op>_<n>`, the batch dimension
    `batch`; the graph's
    description, which names TensorFlow's traced function, is dropped.
    """
    graph.doc_string = ""  # "converted from b'__inference___call___336'": TensorFlow's per-process function counter
    names: dict[str, str] = {graph.input[0].name: "images", graph.output[0].name: "probabilities"}

    def rename(name: str) -> str:
        if name and name not in names:
            names[name] = f"t{len(names)}"
        return names.get(name, name)

    for number, node in enumerate(graph.node):
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        node.name = f"{node.op_type}_{number}"
    dimensions: dict[str, str] = {}  # tf2onnx's process-wide counter names the batch dimension (unk__56, unk__111)
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = rename(value.name)
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param:
                dimension.dim_param = dimensions.setdefault(dimension.dim_param,
                                                            "batch" if not dimensions else f"size{len(dimensions)}")
    for collection in (graph.initializer, graph.value_info):
        for tensor in collection:
            tensor.name = rename(tensor.name)
        ordered = sorted(collection, key=lambda tensor: int(tensor.name[1:]) if tensor.name[1:].isdigit() else -1)
        copies = [type(tensor)() for tensor in ordered]
        for copy, tensor in zip(copies, ordered):
            copy.CopyFrom(tensor)
        del collection[:]
        collection.extend(copies)


def make_reproducible(archive_path: Path) -> None:
    """Rewrite a `.keras` archive in place without save dates, object ids or member write times."""
    with zipfile.ZipFile(archive_path) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(archive_path, "w") as archive:
        for info, payload in members:
            if info.filename == "metadata.json":
                payload = _without_save_date(payload)
            elif info.filename == "config.json":
                payload = _with_stable_object_ids(payload)
            member = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            member.compress_type, member.external_attr = info.compress_type, info.external_attr
            archive.writestr(member, payload)


def _without_save_date(payload: bytes) -> bytes:
    metadata = {key: value for key, value in json.loads(payload).items() if key not in _UNSTABLE_METADATA}
    return json.dumps(metadata).encode()


def _with_stable_object_ids(payload: bytes) -> bytes:
    """Number shared objects 1, 2, ... in order of first appearance (Keras only matches equal ids)."""
    numbering: dict[Any, int] = {}

    def renumber(node):
        if isinstance(node, dict):
            return {key: (numbering.setdefault(value, len(numbering) + 1) if key == "shared_object_id"
                          else renumber(value)) for key, value in node.items()}
        if isinstance(node, list):
            return [renumber(item) for item in node]
        return node

    return json.dumps(renumber(json.loads(payload))).encode()
