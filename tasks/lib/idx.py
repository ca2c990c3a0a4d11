"""Strict reading and writing of IDX files (the MNIST file format), gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the payload. Images are 3-D (count, rows, cols) with
magic 2051, labels 1-D (count) with magic 2049; both are unsigned bytes (type code 0x08).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from tasks.common.errors import IDXFormatError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
UNSIGNED_BYTE_TYPE_CODE = 0x08
_GZIP_SIGNATURE = b"\x1f\x8b"
_KIND_BY_MAGIC = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
_NDIM_BY_MAGIC = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}


def read_payload(path: Path) -> bytes:
    """Return the file's bytes, decompressed when the file is gzip (by signature) or named `.gz`.

    A `.gz` file that is not gzip (an HTML error page saved under that name) is an IDXFormatError."""
    raw = Path(path).read_bytes()
    return gunzip(raw, path) if raw.startswith(_GZIP_SIGNATURE) or Path(path).suffix == ".gz" else raw


def gunzip(data: bytes, origin: Path | str) -> bytes:
    """Decompress gzip bytes; raise IDXFormatError naming `origin` when they are not gzip (an HTML error page, say)."""
    if not data.startswith(_GZIP_SIGNATURE):
        raise IDXFormatError(f"{origin}: not gzip data (starts with {data[:16]!r}); expected a .gz IDX file")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as error:
        raise IDXFormatError(f"{origin}: not a valid gzip stream ({error}); re-download or replace the file") from error


def parse_idx(payload: bytes, expected_magic: int, source: Path | str) -> np.ndarray:
    """Parse IDX bytes into a read-only uint8 array, checking every header field against the payload.

    Raises IDXFormatError naming `source`, the field, what was expected and what was found.
    """
    if len(payload) < 4:
        raise IDXFormatError(f"{source}: file is {len(payload)} bytes, too short for an IDX header (4 bytes)")
    zero_bytes, type_code, ndim = struct.unpack(">HBB", payload[:4])
    magic = struct.unpack(">I", payload[:4])[0]
    if zero_bytes != 0:
        raise IDXFormatError(f"{source}: magic number {magic:#010x} is not an IDX header (first two bytes must be 0)")
    if type_code != UNSIGNED_BYTE_TYPE_CODE:
        raise IDXFormatError(
            f"{source}: unsupported IDX type code {type_code:#04x}; "
            f"expected {UNSIGNED_BYTE_TYPE_CODE:#04x} (unsigned byte)"
        )
    if magic != expected_magic:
        # The magic number's last byte is the dimension count, so a wrong count shows up here.
        found_kind = _KIND_BY_MAGIC.get(magic, f"{ndim} dimensions")
        raise IDXFormatError(
            f"{source}: magic number {magic} ({found_kind}) where {expected_magic} "
            f"({_KIND_BY_MAGIC[expected_magic]}, {_NDIM_BY_MAGIC[expected_magic]} dimensions) was expected"
        )
    return _array_from_body(payload, ndim, source)


def _array_from_body(payload: bytes, ndim: int, source: Path | str) -> np.ndarray:
    header_bytes = 4 + 4 * ndim
    if len(payload) < header_bytes:
        raise IDXFormatError(f"{source}: header declares {ndim} dimensions but the file ends after "
                             f"{len(payload)} bytes")
    shape = struct.unpack(f">{ndim}I", payload[4:header_bytes])
    declared_bytes = int(np.prod(shape, dtype=np.int64))
    actual_bytes = len(payload) - header_bytes
    if actual_bytes != declared_bytes:
        raise IDXFormatError(
            f"{source}: header declares shape {tuple(shape)} = {declared_bytes} payload bytes, "
            f"but the file holds {actual_bytes} ({actual_bytes - declared_bytes:+d}); the file is truncated or corrupt"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_bytes).reshape(shape)


def read_images(path: Path) -> np.ndarray:
    """Read an images IDX file into a (count, rows, cols) uint8 array."""
    return parse_idx(read_payload(path), IMAGES_MAGIC, path)


def read_labels(path: Path) -> np.ndarray:
    """Read a labels IDX file into a (count,) uint8 array."""
    return parse_idx(read_payload(path), LABELS_MAGIC, path)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 or 3 dimensions as IDX bytes."""
    if array.dtype != np.uint8:
        raise TypeError(f"IDX encoding needs a uint8 array, got dtype {array.dtype}")
    if array.ndim not in (1, 3):
        raise ValueError(f"IDX encoding needs 1 (labels) or 3 (images) dimensions, got {array.ndim}")
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()
