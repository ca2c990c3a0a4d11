import gzip
import struct

import numpy as np
import pytest

from tasks.lib import idx
from tasks.common.errors import IDXFormatError
from tests.conftest import make_images


def test_round_trip_plain_and_gzipped(tmp_path):
    images, labels = make_images(7)
    (tmp_path / "images").write_bytes(idx.encode_idx(images))
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx.encode_idx(labels)))

    np.testing.assert_array_equal(idx.read_images(tmp_path / "images"), images)
    np.testing.assert_array_equal(idx.read_labels(tmp_path / "labels.gz"), labels)


def test_labels_file_read_as_images_names_both_magic_numbers(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx.encode_idx(make_images(3)[1]))

    with pytest.raises(IDXFormatError) as raised:
        idx.read_images(path)
    assert str(raised.value) == f"{path}: magic number 2049 (labels) where 2051 (images, 3 dimensions) was expected"


@pytest.mark.parametrize("delta, word", [(-1, r"\(-1\)"), (1, r"\(\+1\)")])
def test_payload_one_byte_short_or_long(tmp_path, delta, word):
    payload = idx.encode_idx(make_images(3)[0])
    path = tmp_path / "images"
    path.write_bytes(payload[:-1] if delta < 0 else payload + b"\0")

    with pytest.raises(IDXFormatError, match=rf"declares shape \(3, 28, 28\) = 2352 payload bytes.*{word}"):
        idx.read_images(path)


def test_unsupported_type_code(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">HBB3I", 0, 0x0D, 3, 1, 28, 28) + b"\0" * 28 * 28 * 4)

    with pytest.raises(IDXFormatError, match=r"images: unsupported IDX type code 0x0d; expected 0x08"):
        idx.read_images(path)


def test_wrong_dimension_count(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">HBB2I", 0, 0x08, 2, 1, 28) + b"\0" * 28)

    with pytest.raises(IDXFormatError, match=r"magic number 2050 \(2 dimensions\) where 2051 \(images, 3 dimensions\)"):
        idx.read_images(path)


def test_gzip_signature_with_broken_stream(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx.encode_idx(make_images(3)[1]))[:-6])

    with pytest.raises(IDXFormatError, match="labels.gz: not a valid gzip stream"):
        idx.read_labels(path)


def test_gunzip_refuses_html_page():
    with pytest.raises(IDXFormatError, match=r"https://x/y.gz: not gzip data \(starts with b'<!DOCTYPE html>"):
        idx.gunzip(b"<!DOCTYPE html><html>Not found</html>", "https://x/y.gz")


def test_file_too_short_for_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(b"\0\0")

    with pytest.raises(IDXFormatError, match="2 bytes, too short for an IDX header"):
        idx.read_labels(path)


def test_encode_refuses_non_uint8():
    with pytest.raises(TypeError, match="needs a uint8 array, got dtype float32"):
        idx.encode_idx(np.zeros((2, 28, 28), dtype=np.float32))
