"""The trained model as a reproducible `.keras` file: the same weights give the same bytes.

Keras' `model.save` stamps three things that change on every save: `date_saved` in `metadata.json`, Python
object ids (`shared_object_id`) in `config.json`, and the write time of each zip member. With them, every
retraining changes the file's hash even when training is deterministic, so DVC reruns evaluate, promote and
report for an identical model, and `dvc.lock` differs between clones. `save_model` writes through Keras and
then rewrites the archive without them; what Keras reads back is unchanged.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from tasks.common.fileio import atomic_path

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can record
_UNSTABLE_METADATA = ("date_saved",)


def save_model(model, path: Path) -> None:
    """Save `model` to `path` atomically, as a `.keras` archive whose bytes depend only on the model."""
    with atomic_path(path) as tmp_path:
        model.save(tmp_path)
        make_reproducible(tmp_path)


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
