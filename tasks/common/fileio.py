"""Atomic writes and checksums: a reader never sees a half-written file at a final path."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.errors import ArrayFileError

_CHUNK_BYTES = 1 << 20
# mkstemp creates 0600 files; outputs are ordinary files that others may read.
_FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; rename it into place only if the block succeeds.

    The temporary file lives in the same directory so the rename is atomic on POSIX.
    On any exception the temporary file is removed and `final_path` is left untouched.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: some writers (Keras' model.save) insist on it.
    handle, tmp_name = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=f".tmp{final_path.suffix}",
                                        dir=final_path.parent)
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, final_path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(final_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory; swap it in for `final_dir` only if the block succeeds."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".tmp", dir=final_dir.parent))
    try:
        yield tmp_dir
        old_dir = final_dir.with_name(f".{final_dir.name}.old")
        shutil.rmtree(old_dir, ignore_errors=True)
        if final_dir.exists():
            os.replace(final_dir, old_dir)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old_dir, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp_path:
        tmp_path.write_bytes(payload)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, document: Any) -> None:
    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=False) + "\n")


def load_arrays(path: Path, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays `names` of an .npz file, and those of `optional` it holds, never unpickling anything.

    A missing, truncated or foreign file, a missing array or a pickled object array is an ArrayFileError
    naming the file (NumPy's own messages do not).
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a single .npy array saved under an .npz name
            raise ValueError(f"a single {loaded.dtype} array of shape {loaded.shape}, not an .npz archive")
        with loaded as archive:
            return {name: archive[name] for name in (*names, *(name for name in optional if name in archive.files))}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ArrayFileError(f"{path}: cannot read arrays {list(names)} ({type(error).__name__}: {error}); "
                             "re-run the stage that writes it") from None


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
