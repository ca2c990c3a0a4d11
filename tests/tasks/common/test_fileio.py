"""tasks/common/fileio.py: atomic writes (a failure leaves the previous file or folder byte-identical and no
temporary behind), the .npz loader's refusals (ArrayFileError naming the file) and file checksums.

Pickled and truncated .npz files are refused through their readers in tests/reliability/test_training_faults.py;
here the loader's other refusals are checked on it directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from tasks.common.errors import ArrayFileError, PipelineError
from tasks.common.fileio import (atomic_directory, atomic_path, load_arrays, sha256_of_file, write_bytes_atomic,
                                 write_json_atomic, write_text_atomic)


class Interrupted(Exception):
    """A failure in the middle of a write."""


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) by relative path, with its content."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def entries_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# ---- atomic_path ----

def test_atomic_path_puts_the_written_file_in_place_readable_by_others(tmp_path):
    final = tmp_path / "reports" / "metrics.json"

    with atomic_path(final) as temporary:
        assert not final.exists()  # nothing at the final path until the block succeeds
        temporary.write_bytes(b'{"accuracy": 0.9}')

    assert final.read_bytes() == b'{"accuracy": 0.9}'
    assert stat.S_IMODE(final.stat().st_mode) == 0o644
    assert entries_in(final.parent) == ["metrics.json"]


def test_atomic_path_writes_beside_the_final_file_keeping_its_suffix(tmp_path):
    """Same folder, so the rename is atomic; the real suffix last, since Keras' model.save insists on it."""
    final = tmp_path / "model.keras"

    with atomic_path(final) as temporary:
        assert temporary.parent == final.parent
        assert temporary.suffix == ".keras" and temporary.name.startswith(".model.")
        temporary.write_bytes(b"new")


def test_failure_mid_write_leaves_the_previous_file_byte_identical_and_no_temporary(tmp_path):
    final = tmp_path / "model.keras"
    final.write_bytes(b"previous model \x00\x01")

    with pytest.raises(Interrupted):
        with atomic_path(final) as temporary:
            temporary.write_bytes(b"half of the new mod")
            raise Interrupted

    assert final.read_bytes() == b"previous model \x00\x01"
    assert entries_in(tmp_path) == ["model.keras"]


def test_failure_before_any_previous_file_leaves_nothing_at_all(tmp_path):
    final = tmp_path / "data" / "train.npz"

    with pytest.raises(Interrupted):
        with atomic_path(final) as temporary:
            temporary.write_bytes(b"partial")
            raise Interrupted

    assert not final.exists()
    assert entries_in(final.parent) == []


def test_two_writers_of_the_same_file_never_share_a_temporary(tmp_path):
    final = tmp_path / "metrics.json"

    with atomic_path(final) as first, atomic_path(final) as second:
        assert first != second
        first.write_bytes(b"first")
        second.write_bytes(b"second")

    assert final.read_bytes() == b"first"  # the last rename wins; each reader saw one whole file
    assert entries_in(tmp_path) == ["metrics.json"]


# ---- write_*_atomic ----

def test_write_json_atomic_writes_indented_json_in_the_given_key_order(tmp_path):
    path = tmp_path / "nested" / "record.json"

    write_json_atomic(path, {"zeta": 1, "alpha": [1.5, "é"]})

    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"zeta": 1, "alpha": [1.5, "é"]}
    assert text.startswith('{\n  "zeta": 1,') and text.endswith("}\n")


def test_write_json_atomic_of_something_not_json_keeps_the_previous_file(tmp_path):
    path = tmp_path / "record.json"
    write_json_atomic(path, {"version": 1})
    before = path.read_bytes()

    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"version": 2, "when": object()})

    assert path.read_bytes() == before
    assert entries_in(tmp_path) == ["record.json"]


def test_write_text_atomic_encodes_utf8_and_replaces_the_whole_file(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("a much longer previous content\n" * 10)

    write_text_atomic(path, "époque,perte\n")

    assert path.read_bytes() == "époque,perte\n".encode("utf-8")


def test_a_disk_full_mid_write_bytes_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "predictions.csv"
    path.write_bytes(b"previous,rows\n")
    real_write_bytes = Path.write_bytes

    def disk_full(self, payload):
        real_write_bytes(self, payload[: len(payload) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        write_bytes_atomic(path, b"new,rows\n" * 100)
    monkeypatch.undo()

    assert path.read_bytes() == b"previous,rows\n"
    assert entries_in(tmp_path) == ["predictions.csv"]


# ---- atomic_directory ----

def test_atomic_directory_swaps_in_the_new_folder_whole(tmp_path):
    final = tmp_path / "production"
    final.mkdir()
    (final / "model.keras").write_bytes(b"champion")
    (final / "stale.json").write_bytes(b"only in the old folder")

    with atomic_directory(final) as temporary:
        assert temporary.parent == final.parent and temporary != final
        (temporary / "model.keras").write_bytes(b"challenger")
        assert files_in(final) == {"model.keras": b"champion", "stale.json": b"only in the old folder"}

    assert files_in(final) == {"model.keras": b"challenger"}
    assert entries_in(tmp_path) == ["production"]  # no temporary and no `.production.old` left


def test_atomic_directory_creates_a_folder_that_did_not_exist(tmp_path):
    final = tmp_path / "models" / "custom" / "production"

    with atomic_directory(final) as temporary:
        (temporary / "metrics.json").write_text("{}")

    assert files_in(final) == {"metrics.json": b"{}"}
    assert entries_in(final.parent) == ["production"]


def test_failure_while_filling_the_folder_leaves_the_previous_folder_byte_identical(tmp_path):
    final = tmp_path / "production"
    (final / "sub").mkdir(parents=True)
    (final / "model.keras").write_bytes(b"champion")
    (final / "sub" / "metrics.json").write_bytes(b'{"accuracy": 0.91}')
    before = files_in(final)

    with pytest.raises(Interrupted):
        with atomic_directory(final) as temporary:
            (temporary / "model.keras").write_bytes(b"half a challen")
            raise Interrupted

    assert files_in(final) == before
    assert entries_in(tmp_path) == ["production"]


def test_a_stale_old_folder_from_an_interrupted_swap_is_cleared_by_the_next_one(tmp_path):
    final = tmp_path / "production"
    final.mkdir()
    (final / "model.keras").write_bytes(b"champion")
    stale = tmp_path / ".production.old"
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"from a swap killed half-way")

    with atomic_directory(final) as temporary:
        (temporary / "model.keras").write_bytes(b"challenger")

    assert files_in(final) == {"model.keras": b"challenger"}
    assert entries_in(tmp_path) == ["production"]


# ---- load_arrays ----

def test_load_arrays_returns_the_named_arrays_usable_after_the_file_is_closed(tmp_path):
    path = tmp_path / "train.npz"
    images = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3) / 17
    np.savez(path, images=images, labels=np.array([3, 7], dtype=np.uint8), extra=np.zeros(4))

    arrays = load_arrays(path, ("images", "labels"))

    assert sorted(arrays) == ["images", "labels"]
    np.testing.assert_array_equal(arrays["images"], images)
    assert arrays["images"].dtype == np.float32 and arrays["labels"].dtype == np.uint8
    assert arrays["labels"].tolist() == [3, 7]


def test_a_missing_array_is_refused_naming_the_file_and_the_array(tmp_path):
    path = tmp_path / "test_predictions.npz"
    np.savez(path, predicted=np.zeros(3, dtype=np.uint8))

    with pytest.raises(ArrayFileError) as raised:
        load_arrays(path, ("predicted", "test_set_sha256"))

    message = str(raised.value)
    assert message.startswith(f"{path}: cannot read arrays ['predicted', 'test_set_sha256'] (KeyError: ")
    assert "test_set_sha256 is not a file in the archive" in message
    assert message.endswith("; re-run the stage that writes it")


def write_empty(path: Path) -> None:
    path.write_bytes(b"")


def write_text(path: Path) -> None:
    path.write_text("images,labels\n1,2\n")


def make_folder(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("make, cause", [
    (None, "FileNotFoundError"),
    (write_empty, "EOFError: No data left in file"),
    (write_text, "ValueError: This file contains pickled (object) data"),
    (make_folder, "IsADirectoryError"),
], ids=["missing", "empty", "csv", "folder"])
def test_an_unreadable_file_is_an_array_file_error_naming_it(tmp_path, make, cause):
    path = tmp_path / "train.npz"
    if make:
        make(path)

    with pytest.raises(ArrayFileError) as raised:
        load_arrays(path, ("images", "labels"))

    message = str(raised.value)
    assert message.startswith(f"{path}: cannot read arrays ['images', 'labels'] ({cause}")
    assert message.endswith("re-run the stage that writes it")
    assert isinstance(raised.value, PipelineError)  # a stage command reports it in one line, no traceback
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_single_npy_array_saved_as_npz_is_an_array_file_error_naming_it(tmp_path):
    """A foreign file: one .npy array (np.save) where an .npz archive (np.savez) was expected."""
    path = tmp_path / "train.npz"
    with open(path, "wb") as stream:
        np.save(stream, np.zeros((2, 28, 28), dtype=np.float32))

    with pytest.raises(ArrayFileError) as raised:
        load_arrays(path, ("images", "labels"))

    assert str(raised.value).startswith(f"{path}: cannot read arrays ['images', 'labels'] (")


# ---- sha256_of_file ----

def test_sha256_of_file_over_several_chunks_matches_hashlib(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    payload = os.urandom((1 << 20) * 2 + 12345)  # two full 1 MiB chunks and a partial one
    path.write_bytes(payload)

    assert sha256_of_file(path) == hashlib.sha256(payload).hexdigest()


def test_sha256_of_file_tells_files_one_byte_apart(tmp_path):
    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    first.write_bytes(b"\x00" * 1000)
    second.write_bytes(b"\x00" * 999 + b"\x01")
    empty.write_bytes(b"")

    assert sha256_of_file(first) != sha256_of_file(second)
    assert sha256_of_file(empty) == hashlib.sha256(b"").hexdigest()


def test_sha256_of_a_missing_file_raises_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-file"):
        sha256_of_file(tmp_path / "missing-file")
