"""Stage 2, ingest: add the labelled images waiting in `data/inbox/<dataset>/` to the dataset, append-only.

The inbox has the image-folder layout: `inbox/{train,test}/<class>/*.png|*.jpg` (tasks/lib/image_folder.py).
Each run that finds new files ready to take makes one drop (tasks/lib/drops.py): the new images go into a shard of
`data/ingested/<dataset>/`; a file that cannot be decoded, is empty or sits outside the layout goes to
`data/quarantine/<dataset>/<drop>/` with a line saying why, and so does an image whose pixels the dataset already
holds (a duplicate) or holds in the other split (train/test leakage), and so does a near-copy of such an image
(moved by a pixel or two, brighter or darker, re-encoded: tasks/lib/near_copies.py), quarantined beside the image it
copies (`matched/<its inbox path>.png`). A drop whose files are all refused is
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
from tasks.lib.images import CONVERSION_VERSION, normalize_images, to_dataset_pixels
from tasks.lib.inbox_files import identity, ready_files, remove_from_inbox
from tasks.lib.near_copies import best_earlier, best_matches, describe_shift
from tasks.lib.outputs import write_record

logger = logging.getLogger(__name__)
HANDLED = "handled.json"  # in a drop's quarantine folder, beside REASONS.txt
MATCHED_FILES = "matched"  # in a drop's quarantine folder: the image each refused copy copies


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
    # The near-copy check: new images checked, images the dataset held (each was compared with both and with the
    # others new), seconds
    near_copy_check: tuple[int, int, float] = (0, 0, 0.0)
    # Added files whose label the champion disputes (`ingest.label_issues: report`), one line each
    label_issues: list[str] = field(default_factory=list)

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
    matched: dict[str, np.ndarray] = field(default_factory=dict)  # a refused copy's path -> the pixels it copies
    near_copy_seconds: float = 0.0
    label_issues: list[dict] = field(default_factory=list)
    near_copies_compared: tuple[int, int] = (0, 0)  # (new images, images the dataset held)

    def refuse(self, kind: list[dict], path: str, content: bytes, reason: str,
               matched: np.ndarray | None = None) -> None:
        kind.append({"path": path, "file_sha256": _sha256(content), "reason": reason})
        self.refused_bytes[path] = content
        if matched is not None:
            self.matched[path] = matched

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
                            framing, self.label_issues)

    def take_out(self, path: str) -> bytes:
        """Remove an added file from the drop (to refuse it after all); its bytes."""
        place = next(place for place, entry in enumerate(self.files) if entry["path"] == path)
        entry = self.files.pop(place)
        row = sum(1 for earlier in self.files[:place] if earlier["split"] == entry["split"])
        del self.pixels[entry["split"]][row], self.labels[entry["split"]][row]
        (content,) = [content for name, content in self.originals if name == path]
        self.originals = [(name, kept) for name, kept in self.originals if name != path]
        return content


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
        drop = _decide(paths, new, names, contents, dataset.class_names, dataset.framing,
                       settings.near_copy_correlation)
        _dispute_labels(paths, drop, dataset.class_names, settings.label_issues)
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
    if new:
        result = replace(result, near_copy_check=(*drop.near_copies_compared, drop.near_copy_seconds))
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


@dataclass(frozen=True)
class _Known:
    """The images a split already holds: their pixels, where each came from, and the SHA-256 of each one's pixels
    (the first one's place when two are the same)."""

    images: np.ndarray
    names: list[str]
    digests: dict[str, int]


@dataclass
class _Candidate:
    """A new file that decoded and is no exact copy: a near-copy check decides."""

    name: str
    content: bytes
    split: str
    label: int
    pixels: np.ndarray
    digest: str


def _decide(paths: DatasetPaths, files: list[Path], names: dict[Path, str], contents: dict[Path, bytes],
            class_names: tuple[str, ...], framing: str, near_copy_correlation: float) -> _Drop:
    """Sort each file into added, duplicate, leakage or quarantined; write nothing."""
    drop = _Drop()
    known = _known_images(paths)
    found, misplaced = place_files(paths.inbox_dir, files, class_names)
    for item in misplaced:
        drop.refuse(drop.quarantined, names[item.path], contents[item.path], item.reason)
    candidates: list[_Candidate] = []
    in_drop: dict[str, dict[str, str]] = {split: {} for split in SPLITS}  # pixels SHA-256 -> name, this drop's
    for image in found:
        name, content = names[image.path], contents[image.path]
        try:
            pixels = to_dataset_pixels(image.path, content, framing)
        except ImageFileError as error:
            drop.refuse(drop.quarantined, name, content, str(error).removeprefix(f"{image.path}: "))
            continue
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()
        other = _other(image.split)
        if digest in known[image.split].digests:
            drop.refuse(drop.duplicates, name, content,
                        f"duplicate: same pixels as {_name_of(known[image.split], digest)}")
        elif digest in in_drop[image.split]:
            drop.refuse(drop.duplicates, name, content,
                        f"duplicate: same pixels as {in_drop[image.split][digest]} (this drop)")
        elif digest in known[other].digests or digest in in_drop[other]:
            source = (_name_of(known[other], digest) if digest in known[other].digests
                      else f"{in_drop[other][digest]} (this drop)")
            drop.refuse(drop.leakage, name, content, f"train/test leakage: same pixels as {source}; {_LEAKAGE}",
                        matched=pixels)
        else:
            in_drop[image.split][digest] = name
            candidates.append(_Candidate(name, content, image.split, image.label, pixels, digest))
    _refuse_near_copies(drop, candidates, known, near_copy_correlation, class_names)
    return drop


_LEAKAGE = "an image in both splits would be tested on what it learned"


def _refuse_near_copies(drop: _Drop, candidates: list[_Candidate], known: dict[str, _Known], threshold: float,
                        class_names: tuple[str, ...]) -> None:
    """Each candidate, in order: refused as leakage when it is a near-copy of an image of the other split (the
    dataset's or this drop's), as a duplicate when of its own split's; else added."""
    if not candidates:
        return
    started = time.perf_counter()
    pixels = np.stack([candidate.pixels for candidate in candidates])
    nearest = {}
    for split in SPLITS:
        mine = [place for place, candidate in enumerate(candidates) if candidate.split == split]
        for against in SPLITS:
            matches = best_matches(pixels[mine], known[against].images)
            for row, place in enumerate(mine):
                found = int(matches.index[row])  # -1 when the split holds no image
                nearest[place, against] = ((float(matches.correlation[row]), known[against].names[found],
                                            known[against].images[found], matches.shift[row]) if found >= 0
                                           else (-1.0, "", None, matches.shift[row]))
    earlier = best_earlier(pixels)
    for place in range(len(candidates)):
        before = int(earlier.index[place])
        if before >= 0:  # the drop's own image it is nearest to, counted with the split that image is in
            split = candidates[before].split
            if float(earlier.correlation[place]) > nearest[place, split][0]:
                nearest[place, split] = (float(earlier.correlation[place]), f"{candidates[before].name} (this drop)",
                                         candidates[before].pixels, earlier.shift[place])
    for place, candidate in enumerate(candidates):
        for split, kind in ((_other(candidate.split), drop.leakage), (candidate.split, drop.duplicates)):
            correlation, source, matched, shift = nearest[place, split]
            if correlation >= threshold:
                copy = f"a near-copy (correlation {correlation:.4f}, {describe_shift(-shift)}) of {source}"
                drop.refuse(kind, candidate.name, candidate.content,
                            f"train/test leakage: {copy}; {_LEAKAGE}" if kind is drop.leakage else f"duplicate: {copy}",
                            matched=matched)
                break
        else:
            drop.add(candidate.name, candidate.split, candidate.label, class_names[candidate.label],
                     candidate.pixels, candidate.digest, candidate.content)
    drop.near_copy_seconds = time.perf_counter() - started
    drop.near_copies_compared = (len(candidates), sum(len(known[split].images) for split in SPLITS))


def _dispute_labels(paths: DatasetPaths, drop: _Drop, class_names: tuple[str, ...], action: str) -> None:
    """The added files whose label the champion disputes: listed in the drop (`report`), or refused (`quarantine`).
    Nothing to ask without a champion, or with one of another number of classes."""
    model_file = paths.production_runtime_model_file
    if not drop.files or not model_file.is_file():
        return
    from tasks.lib.inference import load_network
    from tasks.lib.label_issues import disputed_labels

    entries = drop.files
    rows = {split: 0 for split in SPLITS}
    images = []
    for entry in entries:  # the drop's pixels are kept by split, each in its files' order
        images.append(drop.pixels[entry["split"]][rows[entry["split"]]])
        rows[entry["split"]] += 1
    probabilities = load_network(model_file).predict(normalize_images(np.stack(images)))
    if probabilities.shape[1] != len(class_names):
        logger.warning("%s: the champion (%s) has %d classes, the dataset %d: no label check", paths.dataset,
                       model_file, probabilities.shape[1], len(class_names))
        return
    labels = np.array([entry["label"] for entry in entries])
    suspects = disputed_labels(probabilities, labels)
    if suspects is None:
        logger.warning("%s: labels not checked: the drop's %d new image(s) are all of one class (%s), and confident "
                       "learning judges a label against the drop's other classes", paths.dataset, len(entries),
                       class_names[int(labels[0])])
        return
    disputed = [({"path": entries[suspect.row]["path"], "split": entries[suspect.row]["split"],
                  "label": class_names[suspect.label], "champion_says": class_names[suspect.suggested],
                  "label_probability": round(suspect.self_confidence, 4),
                  "top_probability": round(float(probabilities[suspect.row].max()), 4)})
                for suspect in suspects]
    if action == "report":
        drop.label_issues = disputed
        return
    for issue in disputed:
        content = drop.take_out(issue["path"])
        drop.refuse(drop.quarantined, issue["path"], content, _disputed(issue))


def _disputed(issue: dict) -> str:
    return (f"label disputed: filed as {issue['label']}, the champion says {issue['champion_says']} "
            f"({issue['top_probability']:.2f}; {issue['label']} {issue['label_probability']:.2f})")


def _other(split: str) -> str:
    return SPLITS[1 - SPLITS.index(split)]


def _name_of(known: _Known, digest: str) -> str:
    return known.names[known.digests[digest]]


def _known_images(paths: DatasetPaths) -> dict[str, _Known]:
    """Each split's images already in the dataset, named by where they came from: a published drop's file by its
    inbox path, the base data by its IDX file and row."""
    known = {}
    manifests = read_manifests(paths)
    for split in SPLITS:
        images, _ = read_split(paths, split)  # the base data's rows, then each drop's files in its manifest's order
        in_drops = [f"{entry['path']} (drop {manifest.drop})" for manifest in manifests
                    for entry in manifest.files if entry["split"] == split]
        base_file = (paths.raw_dir / IDX_FILE_NAMES[(split, "images")]).relative_to(paths.root)
        names = [f"{split} image {row} of the base data ({base_file})" for row in range(len(images) - len(in_drops))]
        names += in_drops
        digests: dict[str, int] = {}
        for row, image in enumerate(images):
            digests.setdefault(hashlib.sha256(image.tobytes()).hexdigest(), row)
        if len(names) != len(images):
            raise ValueError(f"{paths.ingested_dir}: {len(images)} {split} images but {len(names)} named")
        known[split] = _Known(images, names, digests)
    return known


def _quarantine(folder: Path, drop: _Drop) -> None:
    """Each refused file, as it arrived, under its inbox path, REASONS.txt with a line per file, and HANDLED (their
    inbox paths and SHA-256s: a drop whose files are all refused is published nowhere else)."""
    from PIL import Image

    refused = [*drop.quarantined, *drop.duplicates, *drop.leakage]
    if not refused:
        return
    with atomic_directory(folder) as scratch:
        for entry in refused:
            target = scratch / QUARANTINED_FILES / entry["path"]  # apart from REASONS.txt, whatever their names
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(drop.refused_bytes[entry["path"]])
            if entry["path"] in drop.matched:  # the image it copies, as the model sees it
                beside = scratch / MATCHED_FILES / f"{entry['path']}.png"
                beside.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(drop.matched[entry["path"]]).save(beside)
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
                        str(paths.quarantine_dir / manifest.drop) if refused else None,
                        label_issues=[f"{paths.inbox_dir / issue['path']}: {_disputed(issue)}"
                                      for issue in manifest.label_issues])


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
    checked, held, seconds = result.near_copy_check
    if checked:
        logger.info("%s: near-copy check of %d new images against the %d held and each other: %.1f s (%.0f images/s)",
                    result.dataset, checked, held, seconds, checked / max(seconds, 1e-9))
    for line in result.duplicates + result.leakage + result.quarantined:
        logger.warning("refused %s", line)
    for line in result.label_issues:
        logger.warning("added, but %s", line)


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("ingest", argv, lambda paths, params: ingest_inbox(
        paths, params.dataset(paths.dataset), params.ingest))


if __name__ == "__main__":
    raise SystemExit(main())
