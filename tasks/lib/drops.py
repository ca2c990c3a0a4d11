"""The growing dataset: the download stage's base files plus one shard per ingested drop, with one writer
(`publish_drop`, the ingest stage) and one reader (`read_split`, every later stage).

    data/ingested/<dataset>/index.json            the published drops, in order, and their conversion version
    data/ingested/<dataset>/<drop>/manifest.json  what the drop added and refused (DropManifest)
    data/ingested/<dataset>/<drop>/<IDX files>    the added images and labels, named as in data/raw/<dataset>/
    data/ingested/<dataset>/<drop>/originals.zip  each added file's original bytes, as <split>/<class>/<file>

A drop is published by rewriting index.json after its folder is complete. A folder that the index does not list
is what an interrupted ingest left, and the next ingest removes it.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.common.errors import DataValidationError
from tasks.common.fileio import atomic_directory, write_bytes_atomic, write_json_atomic
from tasks.common.paths import DRIFT_PLACEHOLDER, IDX_FILE_NAMES, INBOX_PLACEHOLDER, SPLITS, DatasetPaths
from tasks.lib import idx
from tasks.lib.outputs import read_record, write_record

MANIFEST = "manifest.json"
ORIGINALS_ARCHIVE = "originals.zip"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class DropIndex:
    """data/ingested/<dataset>/index.json: the published drops, oldest first."""

    drops: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DropManifest:
    """data/ingested/<dataset>/<drop>/manifest.json. Each file entry is a dict: `path` (relative to the inbox),
    `file_sha256` (its bytes); added files also have `split`, `label` and `pixels_sha256`, refused ones `reason`."""

    drop: str
    ingested_at: str
    conversion_version: int
    added: dict[str, dict[str, int]]
    files: list[dict]
    duplicates: list[dict]
    leakage: list[dict]
    quarantined: list[dict]
    # data.<dataset>.framing the files were converted with (tasks/lib/images.py); drops from before it was a
    # setting were framed as `box` would have.
    framing: str = "box"
    # Added files whose label the champion disputed (tasks/lib/label_issues.py), each {path, split, label,
    # champion_says, label_probability, top_probability}; under `ingest.label_issues: quarantine` they were refused.
    label_issues: list[dict] = field(default_factory=list)

    def handled(self) -> set[tuple[str, str]]:
        """(inbox path, bytes SHA-256) of every file this drop took out of the inbox, added or refused."""
        return {(entry["path"], entry["file_sha256"])
                for entry in (*self.files, *self.duplicates, *self.leakage, *self.quarantined)}


def read_index(paths: DatasetPaths) -> DropIndex:
    """The published drops; none when nothing was ever ingested."""
    if not paths.drop_index_file.exists():
        return DropIndex()
    return read_record(paths.drop_index_file, DropIndex)


def describe_version(drops: list[str]) -> str:
    """A data version in words: `base` or `base + 2 drop(s), latest <drop id>`."""
    return f"base + {len(drops)} drop(s), latest {drops[-1]}" if drops else "base"


def read_manifests(paths: DatasetPaths) -> list[DropManifest]:
    return [read_record(paths.drop_dir(drop) / MANIFEST, DropManifest) for drop in read_index(paths).drops]


def part_folders(paths: DatasetPaths) -> list[tuple[str, Path]]:
    """The dataset's parts in order: ("base", the download's folder), then (drop id, its folder) per drop."""
    return [("base", paths.raw_dir)] + [(drop, paths.drop_dir(drop)) for drop in read_index(paths).drops]


def read_part(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One part's split. Raises IDXFormatError or DataValidationError naming the file when it is malformed or its
    image and label counts differ."""
    images_file = folder / IDX_FILE_NAMES[(split, "images")]
    labels_file = folder / IDX_FILE_NAMES[(split, "labels")]
    images, labels = idx.read_images(images_file), idx.read_labels(labels_file)
    if len(images) != len(labels):
        raise DataValidationError(
            f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels; "
            "the two files of a split must have one label per image")
    return images, labels


def read_split(paths: DatasetPaths, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split of the whole dataset: the base files, then each published drop in order (see read_part)."""
    parts = [read_part(folder, split) for _, folder in part_folders(paths)]
    if len(parts) == 1:
        return parts[0][0], parts[0][1].copy()
    return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])


def publish_drop(paths: DatasetPaths, manifest: DropManifest, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                 originals: list[tuple[str, bytes]]) -> None:
    """Write the drop's folder whole, then list it in the index: until then, readers do not see it."""
    write_drop(paths, manifest, splits, originals)
    write_record(paths.drop_index_file, DropIndex([*read_index(paths).drops, manifest.drop]))


def write_drop(paths: DatasetPaths, manifest: DropManifest, splits: dict[str, tuple[np.ndarray, np.ndarray]],
               originals: list[tuple[str, bytes]]) -> None:
    """The drop's folder, swapped in whole (a new drop, or a published one rebuilt)."""
    with atomic_directory(paths.drop_dir(manifest.drop)) as folder:
        for split, (images, labels) in splits.items():
            write_bytes_atomic(folder / IDX_FILE_NAMES[(split, "images")], idx.encode_idx(images))
            write_bytes_atomic(folder / IDX_FILE_NAMES[(split, "labels")], idx.encode_idx(labels))
        _write_originals(folder / ORIGINALS_ARCHIVE, originals)
        # Its fields hold plain lists and dicts: no deep copy (dataclasses.asdict took 0.2 s for 10,000 files).
        write_json_atomic(folder / MANIFEST, {name: getattr(manifest, name) for name in manifest.__dataclass_fields__})


def _write_originals(path: Path, originals: list[tuple[str, bytes]]) -> None:
    """One uncompressed zip of the files as they arrived (`<split>/<class>/<name>`): one file for DVC to cache,
    not thousands, and the same bytes for the same files (fixed entry times)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in originals:
            archive.writestr(zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME), content)


def read_originals(paths: DatasetPaths, drop: str) -> dict[str, bytes]:
    """A published drop's files as they arrived, by their path in the inbox (to rebuild its pixels)."""
    with zipfile.ZipFile(paths.drop_dir(drop) / ORIGINALS_ARCHIVE) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def ensure_inbox(paths: DatasetPaths) -> None:
    """The dataset's inbox with its placeholder. DVC hashes the inbox as a dependency of ingest and refuses to run
    it when missing: the download stage, first for a new dataset, makes it (a clone has it from git)."""
    paths.inbox_dir.mkdir(parents=True, exist_ok=True)
    (paths.inbox_dir / INBOX_PLACEHOLDER).touch(exist_ok=True)


def ensure_drift_acceptance_dir(paths: DatasetPaths) -> None:
    """The folder `make accept-drift` writes to, with its placeholder: a dependency of the drift stage, made by the
    download stage like the inbox."""
    paths.drift_acceptance_dir.mkdir(parents=True, exist_ok=True)
    (paths.drift_acceptance_dir / DRIFT_PLACEHOLDER).touch(exist_ok=True)


def prepare_ingested_dir(paths: DatasetPaths) -> None:
    """Make sure the index exists (DVC versions the folder even before the first drop) and remove what an
    interrupted ingest left: a drop folder the index does not list, or a half-written temporary folder."""
    if not paths.drop_index_file.exists():
        write_record(paths.drop_index_file, DropIndex())
    published = set(read_index(paths).drops)
    for drop in published:  # a rebuild killed between its two renames left the drop as .<drop>.old: put it back
        kept = paths.drop_dir(drop).with_name(f".{drop}.old")  # tasks/common/fileio.py: atomic_directory
        if not paths.drop_dir(drop).exists() and kept.is_dir():
            os.replace(kept, paths.drop_dir(drop))
    for child in paths.ingested_dir.iterdir():
        if child.is_dir() and child.name not in published:
            shutil.rmtree(child)


@dataclass(frozen=True)
class IngestSummary:
    """reports/<dataset>/ingest.json (ingest): each drop in order with what it added and refused, and the totals.
    Made from the manifests alone, so an ingest that finds nothing new rewrites the same bytes."""

    dataset: str
    drops: list[dict]
    images_added: dict[str, int]


def summarize_drops(dataset: str, manifests: list[DropManifest]) -> IngestSummary:
    drops = [{"drop": manifest.drop, "ingested_at": manifest.ingested_at, "added": manifest.added,
              "duplicates": len(manifest.duplicates), "leakage": len(manifest.leakage),
              "quarantined": len(manifest.quarantined), "label_issues": manifest.label_issues}
             for manifest in manifests]
    totals = {split: sum(sum(manifest.added.get(split, {}).values()) for manifest in manifests) for split in SPLITS}
    return IngestSummary(dataset, drops, totals)
