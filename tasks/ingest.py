"""Stage 2, ingest: add the labelled images waiting in `data/inbox/<dataset>/` to the dataset, append-only.

The inbox has the image-folder layout: `inbox/{train,test}/<class>/*.png|*.jpg` (tasks/lib/image_folder.py).
Each run that finds new files ready to take makes one drop (tasks/lib/drops.py): the new images go into a shard of
`data/ingested/<dataset>/`; a file that cannot be decoded, is empty or sits outside the layout goes to
`data/quarantine/<dataset>/<drop>/` with a line saying why, and so does an image whose pixels the dataset already
holds (a duplicate) or holds in the other split (train/test leakage). A drop whose files are all refused is
published nowhere: it adds nothing, so the dataset's version stays as it was. A file still being copied (changed
within `ingest.settle_seconds`, or named `.*`, `*.part`, `*.tmp`) is left for the next run.

Nothing is lost: the inbox's files are removed only after the drop is published (or its files quarantined), and a
rerun after a crash removes the files an earlier run already published or quarantined and takes the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tasks.common.config import DatasetParams, IngestParams
from tasks.common.errors import ImageFileError
from tasks.common.fileio import atomic_directory, write_text_atomic
from tasks.common.paths import IDX_FILE_NAMES, QUARANTINE_REASONS, QUARANTINED_FILES, SPLITS, DatasetPaths
from tasks.lib.drops import (DropManifest, ensure_inbox, prepare_ingested_dir, publish_drop, read_manifests,
                             read_originals, read_split, summarize_drops, write_drop)
from tasks.lib.image_folder import place_files
from tasks.lib.geometry import IMAGE_SIDE
from tasks.lib.images import CONVERSION_VERSION, to_dataset_pixels
from tasks.lib.inbox_files import identity, ready_files, remove_from_inbox
from tasks.lib.outputs import write_record

logger = logging.getLogger(__name__)
HANDLED = "handled.json"  # in a drop's quarantine folder, beside REASONS.txt


@dataclass(frozen=True)
class IngestResult:
    dataset: str
    drop: str | None  # None when no file was ready, or when every new file was refused (nothing published)
    added: dict[str, int]
    duplicates: list[str]
    leakage: list[str]
    quarantined: list[str]
    waiting: list[str]
    completed_earlier: int = 0
    refused_in: str | None = None  # the quarantine folder of the new files refused, if any

    @property
    def refused(self) -> int:
        return len(self.duplicates) + len(self.leakage) + len(self.quarantined)

    def refusal(self) -> str:
        """When new files came and all were refused (nothing published), what became of them; else ''."""
        if self.drop is not None or not self.refused:
            return ""
        return (f"nothing added: all {self.refused} new file(s) refused ({len(self.duplicates)} duplicate(s), "
                f"{len(self.leakage)} leakage, {len(self.quarantined)} quarantined), each with its reason in "
                f"{Path(self.refused_in or '') / QUARANTINE_REASONS}")


@dataclass
class _Drop:
    """What one run decides, file by file, before anything is written."""

    files: list[dict] = field(default_factory=list)
    pixels: dict[str, list[np.ndarray]] = field(default_factory=lambda: {split: [] for split in SPLITS})
    labels: dict[str, list[int]] = field(default_factory=lambda: {split: [] for split in SPLITS})
    originals: list[tuple[str, bytes]] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    leakage: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    refused_bytes: dict[str, bytes] = field(default_factory=dict)

    def refuse(self, kind: list[dict], path: str, content: bytes, reason: str) -> None:
        kind.append({"path": path, "file_sha256": _sha256(content), "reason": reason})
        self.refused_bytes[path] = content

    def add(self, path: str, split: str, label: int, class_name: str, pixels: np.ndarray, pixels_sha256: str,
            content: bytes) -> None:
        self.files.append({"path": path, "file_sha256": _sha256(content), "split": split, "label": label,
                           "class": class_name, "pixels_sha256": pixels_sha256})
        self.pixels[split].append(pixels)
        self.labels[split].append(label)
        self.originals.append((path, content))

    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {split: (np.stack(self.pixels[split]) if self.pixels[split]
                        else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8),
                        np.array(self.labels[split], dtype=np.uint8)) for split in SPLITS}

    def manifest(self, drop: str, now: float, class_names: tuple[str, ...], framing: str) -> DropManifest:
        added = {split: {name: sum(1 for entry in self.files if entry["split"] == split and entry["class"] == name)
                         for name in class_names} for split in SPLITS}
        return DropManifest(drop, datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
                            CONVERSION_VERSION, added, self.files, self.duplicates, self.leakage, self.quarantined,
                            framing)


def ingest_inbox(paths: DatasetPaths, dataset: DatasetParams, settings: IngestParams,
                 now: float | None = None) -> IngestResult:
    """Take the inbox's ready files into one new drop (none when no new file is ready, or when every new file
    is refused); return what happened.
    `now` (seconds since the epoch) dates the drop; the default is the time of the run."""
    now = time.time() if now is None else now
    ensure_inbox(paths)
    prepare_ingested_dir(paths)
    manifests = rebuild_outdated_drops(paths, read_manifests(paths), dataset.framing)
    ready, waiting = ready_files(paths.inbox_dir, settings.settle_seconds)
    read = _read_files(ready)
    ready = [path for path in ready if path in read]  # a file gone since it was listed is not taken
    contents = {path: content for path, (content, _) in read.items()}
    prefix = len(str(paths.inbox_dir)) + 1
    names = {path: str(path)[prefix:] for path in ready}  # as the manifest records them: train/Sandal/a.png
    handled = set().union(*(manifest.handled() for manifest in manifests)) | _refused_earlier(paths)
    earlier = {path for path in ready if (names[path], _sha256(contents[path])) in handled}
    new = [path for path in ready if path not in earlier]
    decided = None
    if new:
        drop = _decide(paths, new, names, contents, dataset.class_names, dataset.framing)
        decided = drop.manifest(_drop_id(now, [names[path] for path in new]), now, dataset.class_names,
                                dataset.framing)
        _quarantine(paths.quarantine_dir / decided.drop, drop)
        if drop.files:  # a drop that adds no image changes nothing versioned: no new version, no retraining
            publish_drop(paths, decided, drop.arrays(), drop.originals)
            manifests.append(decided)
    # Only now, every file being in a published drop or in quarantine; one replaced since it was read stays.
    waiting += remove_from_inbox(paths.inbox_dir, {path: read[path][1] for path in [*earlier, *new]})
    write_record(paths.ingest_summary_file, summarize_drops(paths.dataset, manifests))
    result = _result(paths, decided, waiting, len(earlier))
    _log(result, paths)
    return result


def _read_files(files: list[Path]) -> dict[Path, tuple[bytes, tuple[int, int, int]]]:
    """Each file's bytes and identity (taken before reading: a later replacement then differs)."""
    read = {}
    for path in files:
        try:
            status = path.stat()
            read[path] = (path.read_bytes(), identity(status))
        except FileNotFoundError:
            continue
    return read


def rebuild_outdated_drops(paths: DatasetPaths, manifests: list[DropManifest], framing: str) -> list[DropManifest]:
    """Make again, from its original bytes, the pixels of every drop an earlier version of the image conversion
    made (tasks/lib/images.py, CONVERSION_VERSION); the drop keeps its name, place and files. The manifests as now."""
    current = []
    for manifest in manifests:
        if manifest.conversion_version != CONVERSION_VERSION or manifest.framing != framing:
            manifest = _rebuild(paths, manifest, framing)
        current.append(manifest)
    return current


def _rebuild(paths: DatasetPaths, manifest: DropManifest, framing: str) -> DropManifest:
    originals = read_originals(paths, manifest.drop)
    drop = _Drop()
    for entry in manifest.files:
        pixels = to_dataset_pixels(Path(entry["path"]), originals[entry["path"]], framing)
        digest = _sha256(pixels.tobytes())
        drop.add(entry["path"], entry["split"], entry["label"], entry["class"], pixels, digest,
                 originals[entry["path"]])
    rebuilt = replace(manifest, conversion_version=CONVERSION_VERSION, files=drop.files, framing=framing)
    write_drop(paths, rebuilt, drop.arrays(), drop.originals)
    logger.info("%s: drop %s rebuilt from its %d original files (image conversion %d -> %d)", paths.dataset,
                manifest.drop, len(manifest.files), manifest.conversion_version, CONVERSION_VERSION)
    return rebuilt


def _decide(paths: DatasetPaths, files: list[Path], names: dict[Path, str], contents: dict[Path, bytes],
            class_names: tuple[str, ...], framing: str) -> _Drop:
    """Sort each file into added, duplicate, leakage or quarantined; write nothing."""
    drop = _Drop()
    known = _known_pixels(paths)
    found, misplaced = place_files(paths.inbox_dir, files, class_names)
    for item in misplaced:
        drop.refuse(drop.quarantined, names[item.path], contents[item.path], item.reason)
    for image in found:
        name, content = names[image.path], contents[image.path]
        try:
            pixels = to_dataset_pixels(image.path, content, framing)
        except ImageFileError as error:
            drop.refuse(drop.quarantined, name, content, str(error).removeprefix(f"{image.path}: "))
            continue
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()
        other = SPLITS[1 - SPLITS.index(image.split)]
        if digest in known[image.split]:
            drop.refuse(drop.duplicates, name, content, f"duplicate: same pixels as {known[image.split][digest]}")
        elif digest in known[other]:
            drop.refuse(drop.leakage, name, content, f"train/test leakage: same pixels as {known[other][digest]}; "
                                                     f"an image in both splits would be tested on what it learned")
        else:
            known[image.split][digest] = f"{name} (this drop)"
            drop.add(name, image.split, image.label, class_names[image.label], pixels, digest, content)
    return drop


def _known_pixels(paths: DatasetPaths) -> dict[str, dict[str, str]]:
    """SHA-256 of each image's pixels already in the dataset -> which file it came from, per split: a published
    drop's file by its inbox path, the base data by its IDX file and row."""
    known: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    manifests = read_manifests(paths)
    for split in SPLITS:
        images, _ = read_split(paths, split)  # the base data's rows, then each drop's files in its manifest's order
        in_drops = [f"{entry['path']} (drop {manifest.drop})" for manifest in manifests
                    for entry in manifest.files if entry["split"] == split]
        base_file = (paths.raw_dir / IDX_FILE_NAMES[(split, "images")]).relative_to(paths.root)
        names = [f"{split} image {row} of the base data ({base_file})" for row in range(len(images) - len(in_drops))]
        for name, image in zip(names + in_drops, images, strict=True):
            known[split].setdefault(hashlib.sha256(image.tobytes()).hexdigest(), name)
    return known


def _quarantine(folder: Path, drop: _Drop) -> None:
    """Each refused file, as it arrived, under its inbox path, REASONS.txt with a line per file, and HANDLED (their
    inbox paths and SHA-256s: a drop whose files are all refused is published nowhere else)."""
    refused = [*drop.quarantined, *drop.duplicates, *drop.leakage]
    if not refused:
        return
    with atomic_directory(folder) as scratch:
        for entry in refused:
            target = scratch / QUARANTINED_FILES / entry["path"]  # apart from REASONS.txt, whatever their names
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(drop.refused_bytes[entry["path"]])
        write_text_atomic(scratch / QUARANTINE_REASONS,
                          "".join(f"{entry['path']}: {entry['reason']}\n" for entry in refused))
        write_text_atomic(scratch / HANDLED, json.dumps([[entry["path"], entry["file_sha256"]] for entry in refused]))


def _refused_earlier(paths: DatasetPaths) -> set[tuple[str, str]]:
    """(inbox path, bytes SHA-256) of every file an earlier run quarantined: taken out of the inbox already, though
    no published drop lists it when its drop added nothing. A rerun after a crash before the inbox was emptied, or
    the same file dropped again, is then known, not refused (and quarantined) a second time."""
    return {(path, digest) for record in sorted(paths.quarantine_dir.glob(f"*/{HANDLED}"))
            for path, digest in json.loads(record.read_text())}


def _drop_id(now: float, names: list[str]) -> str:
    """When the drop was taken, and a digest of its file names: sortable, and two drops never share one."""
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{_sha256(chr(10).join(sorted(names)).encode())[:8]}"


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _result(paths: DatasetPaths, manifest: DropManifest | None, waiting: list[Path], earlier: int) -> IngestResult:
    def named(entries: list[dict]) -> list[str]:
        return [f"{paths.inbox_dir / entry['path']}: {entry['reason']}" for entry in entries]

    if manifest is None:
        return IngestResult(paths.dataset, None, {split: 0 for split in SPLITS}, [], [], [],
                            [str(path) for path in waiting], earlier)
    refused = [*manifest.duplicates, *manifest.leakage, *manifest.quarantined]
    return IngestResult(paths.dataset, manifest.drop if manifest.files else None,
                        {split: sum(counts.values()) for split, counts in manifest.added.items()},
                        named(manifest.duplicates), named(manifest.leakage), named(manifest.quarantined),
                        [str(path) for path in waiting], earlier,
                        str(paths.quarantine_dir / manifest.drop) if refused else None)


def _log(result: IngestResult, paths: DatasetPaths) -> None:
    if result.drop is not None:
        logger.info("%s: drop %s added %s images; %d duplicate(s), %d leakage, %d quarantined in %s; %d left for "
                    "the next run", result.dataset, result.drop, result.added, len(result.duplicates),
                    len(result.leakage), len(result.quarantined), paths.quarantine_dir / result.drop,
                    len(result.waiting))
    elif result.refused:
        logger.info("%s: %s; the dataset is unchanged", result.dataset, result.refusal())
    else:
        logger.info("%s: nothing new in %s%s", result.dataset, paths.inbox_dir,
                    f" ({len(result.waiting)} file(s) still arriving, left for the next run)" if result.waiting else "")
    for line in result.duplicates + result.leakage + result.quarantined:
        logger.warning("refused %s", line)


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("ingest", argv, lambda paths, params: ingest_inbox(
        paths, params.dataset(paths.dataset), params.ingest))


if __name__ == "__main__":
    raise SystemExit(main())
