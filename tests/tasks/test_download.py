"""Stage 1, download: real files, a real HTTPS server on 127.0.0.1 (tests/https_server.py), no mocked download code."""

import gzip
import re
from hashlib import sha256

import numpy as np
import pytest

from tasks.lib import catalog, idx
from tasks.common.config import DownloadParams, parse_params
from tasks.download import download_dataset
from tasks.common.errors import ConfigError, DownloadError
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tests.conftest import make_images, project_params_document, write_idx_dataset
from tests.https_server import https_server, tls_ca  # noqa: F401 (pytest fixtures)

FILE_NAMES = list(IDX_FILE_NAMES.values())
FIRST = FILE_NAMES[0]  # train-images-idx3-ubyte, the first file download_dataset fetches
SETTINGS = DownloadParams(timeout_seconds=2, attempts=1, backoff_seconds=0)
TRAIN = make_images(20, seed=1)
TEST = make_images(10, seed=2)
PAYLOADS = {
    IDX_FILE_NAMES[("train", "images")]: idx.encode_idx(TRAIN[0]),
    IDX_FILE_NAMES[("train", "labels")]: idx.encode_idx(TRAIN[1]),
    IDX_FILE_NAMES[("test", "images")]: idx.encode_idx(TEST[0]),
    IDX_FILE_NAMES[("test", "labels")]: idx.encode_idx(TEST[1]),
}


@pytest.fixture(autouse=True)
def generated_mnist_checksums(monkeypatch):
    # The canonical MNIST hosts are unreachable from the tests, and the real files are far too big anyway.
    # The download code under test is real; only the expected checksum values are swapped for those of the
    # small payloads generated here, so that a faithful copy of *them* verifies and anything else does not.
    monkeypatch.setitem(catalog.PAYLOAD_SHA256, "mnist",
                        {name: sha256(payload).hexdigest() for name, payload in PAYLOADS.items()})


def dataset_params(name="mnist", local_dir=None, mirrors=()):
    """The project's real params.yaml settings for `name`, with local_dir and mirrors replaced."""
    document = project_params_document()
    document["data"][name]["local_dir"] = None if local_dir is None else str(local_dir)
    document["data"][name]["mirrors"] = list(mirrors)
    return parse_params(document).dataset(name)


def serve_all(server, prefix, transform=gzip.compress):
    for name, payload in PAYLOADS.items():
        server.routes[f"{prefix}/{name}.gz"] = ("ok", transform(payload))


def flip_one_byte(payload: bytes) -> bytes:
    middle = len(payload) // 2
    return payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1:]


def assert_raw_files_are_the_payloads(paths):
    assert sorted(p.name for p in paths.raw_dir.iterdir()) == sorted(FILE_NAMES)  # no temporary files left
    for name, payload in PAYLOADS.items():
        assert (paths.raw_dir / name).read_bytes() == payload, name


def assert_nothing_in_raw_dir(paths):
    leftovers = sorted(p.name for p in paths.raw_dir.iterdir()) if paths.raw_dir.exists() else []
    assert leftovers == []


def test_gzipped_local_dir_is_decompressed_into_raw(tmp_path, https_server):
    incoming = tmp_path / "incoming"
    write_idx_dataset(incoming, TRAIN, TEST, gzipped=True)
    serve_all(https_server, "/mirror")
    paths = DatasetPaths(tmp_path, "mnist")

    result = download_dataset(paths, dataset_params(local_dir=incoming, mirrors=[https_server.url("/mirror")]),
                              SETTINGS)

    assert_raw_files_are_the_payloads(paths)
    assert result.dataset == "mnist"
    assert result.source_by_file == {name: f"local directory {incoming / name}.gz" for name in FILE_NAMES}
    assert https_server.requests == []  # the local copy verified, so no mirror was asked


def test_first_mirror_404_second_mirror_serves(tmp_path, https_server):
    serve_all(https_server, "/second")
    paths = DatasetPaths(tmp_path, "mnist")
    mirrors = [https_server.url("/first"), https_server.url("/second/")]  # a trailing slash is tolerated

    result = download_dataset(paths, dataset_params(mirrors=mirrors), SETTINGS)

    assert_raw_files_are_the_payloads(paths)
    assert result.source_by_file == {name: f"mirror {https_server.url(f'/second/{name}.gz')}" for name in FILE_NAMES}
    assert https_server.requests == [
        path for name in FILE_NAMES for path in (f"/first/{name}.gz", f"/second/{name}.gz")
    ]


def test_all_mirrors_failing_lists_every_url_and_writes_nothing(tmp_path, https_server):
    https_server.routes[f"/busy/{FIRST}.gz"] = ("status", 503)
    https_server.routes[f"/cut/{FIRST}.gz"] = ("truncate", gzip.compress(PAYLOADS[FIRST]))
    paths = DatasetPaths(tmp_path, "mnist")
    urls = [https_server.url(f"/{mirror}/{FIRST}.gz") for mirror in ("gone", "busy", "cut")]
    truncated_size = len(gzip.compress(PAYLOADS[FIRST]))

    with pytest.raises(DownloadError) as raised:
        download_dataset(paths, dataset_params(mirrors=[https_server.url(f"/{m}") for m in ("gone", "busy", "cut")]),
                         SETTINGS)

    assert str(raised.value) == (
        f"mnist/{FIRST}: no source provided a verified file; tried:\n"
        f"  - {urls[0]}: HTTP 404 Not Found\n"
        f"  - {urls[1]}: HTTP 503 Service Unavailable\n"
        f"  - {urls[2]}: body truncated: received {truncated_size // 2} of {truncated_size} bytes"
    )
    assert https_server.requests == [f"/gone/{FIRST}.gz", f"/busy/{FIRST}.gz", f"/cut/{FIRST}.gz"]
    assert not (paths.raw_dir / FIRST).exists()
    assert_nothing_in_raw_dir(paths)


def test_transient_mirror_failure_is_retried_per_download_settings(tmp_path, https_server):
    for name, payload in PAYLOADS.items():
        https_server.routes[f"/flaky/{name}.gz"] = ("sequence", [("status", 503), ("ok", gzip.compress(payload))])
    paths = DatasetPaths(tmp_path, "mnist")

    download_dataset(paths, dataset_params(mirrors=[https_server.url("/flaky")]),
                     DownloadParams(timeout_seconds=2, attempts=2, backoff_seconds=0))

    assert_raw_files_are_the_payloads(paths)
    assert https_server.requests == [f"/flaky/{name}.gz" for name in FILE_NAMES for _ in range(2)]


def test_mirror_answering_html_is_reported_as_not_gzip(tmp_path, https_server):
    https_server.routes[f"/portal/{FIRST}.gz"] = ("html", b"<!DOCTYPE html><html><body>Please log in</body></html>")
    paths = DatasetPaths(tmp_path, "mnist")
    url = https_server.url(f"/portal/{FIRST}.gz")

    with pytest.raises(DownloadError) as raised:
        download_dataset(paths, dataset_params(mirrors=[https_server.url("/portal")]), SETTINGS)

    message = str(raised.value)
    assert message.startswith(f"mnist/{FIRST}: no source provided a verified file")
    assert f"{url}: not gzip data (starts with b'<!DOCTYPE html><'); expected a .gz IDX file" in message
    assert_nothing_in_raw_dir(paths)


def test_mirror_serving_other_bytes_fails_the_checksum(tmp_path, https_server):
    https_server.routes[f"/bad/{FIRST}.gz"] = ("ok", gzip.compress(flip_one_byte(PAYLOADS[FIRST])))
    paths = DatasetPaths(tmp_path, "mnist")
    url = https_server.url(f"/bad/{FIRST}.gz")
    expected = sha256(PAYLOADS[FIRST]).hexdigest()
    found = sha256(flip_one_byte(PAYLOADS[FIRST])).hexdigest()

    with pytest.raises(DownloadError) as raised:
        download_dataset(paths, dataset_params(mirrors=[https_server.url("/bad")]), SETTINGS)

    assert f"{url}: SHA-256 of the decompressed payload is {found}, expected {expected}" in str(raised.value)
    assert not (paths.raw_dir / FIRST).exists()
    assert_nothing_in_raw_dir(paths)


def test_mirror_redirecting_to_plain_http_is_refused(tmp_path, https_server):
    target = https_server.url(f"/plain/{FIRST}.gz").replace("https://", "http://")
    https_server.routes[f"/moved/{FIRST}.gz"] = ("redirect", target)
    paths = DatasetPaths(tmp_path, "mnist")

    with pytest.raises(DownloadError, match=re.escape(f"redirect to {target!r} refused (only https:// is followed)")):
        download_dataset(paths, dataset_params(mirrors=[https_server.url("/moved")]), SETTINGS)

    assert https_server.requests == [f"/moved/{FIRST}.gz"]
    assert_nothing_in_raw_dir(paths)


def test_corrupted_raw_file_is_detected_and_fetched_again(tmp_path, https_server):
    paths = DatasetPaths(tmp_path, "mnist")
    write_idx_dataset(paths.raw_dir, TRAIN, TEST)
    (paths.raw_dir / FIRST).write_bytes(flip_one_byte(PAYLOADS[FIRST]))
    incoming = tmp_path / "incoming"
    write_idx_dataset(incoming, TRAIN, TEST, gzipped=True)
    serve_all(https_server, "/mirror")

    result = download_dataset(paths, dataset_params(local_dir=incoming, mirrors=[https_server.url("/mirror")]),
                              SETTINGS)

    assert_raw_files_are_the_payloads(paths)
    assert result.source_by_file[FIRST] == f"local directory {incoming / FIRST}.gz"
    for name in FILE_NAMES[1:]:
        assert result.source_by_file[name] == f"{paths.raw_dir / name} (already present, checksum verified)"
    assert https_server.requests == []


def test_valid_raw_files_are_kept_and_nothing_is_fetched(tmp_path, https_server):
    paths = DatasetPaths(tmp_path, "mnist")
    write_idx_dataset(paths.raw_dir, TRAIN, TEST)
    serve_all(https_server, "/mirror")
    modified = {name: (paths.raw_dir / name).stat().st_mtime_ns for name in FILE_NAMES}

    result = download_dataset(paths, dataset_params(mirrors=[https_server.url("/mirror")]), SETTINGS)

    assert result.source_by_file == {
        name: f"{paths.raw_dir / name} (already present, checksum verified)" for name in FILE_NAMES
    }
    assert https_server.requests == []
    assert {name: (paths.raw_dir / name).stat().st_mtime_ns for name in FILE_NAMES} == modified
    assert_raw_files_are_the_payloads(paths)


def test_custom_dataset_without_checksums_reads_uncompressed_local_files(tmp_path):
    assert catalog.expected_sha256("custom", FIRST) is None  # custom data relies on the validate stage instead
    incoming = tmp_path / "incoming"
    write_idx_dataset(incoming, TRAIN, TEST)
    paths = DatasetPaths(tmp_path, "custom")

    result = download_dataset(paths, dataset_params("custom", local_dir=incoming), SETTINGS)

    assert_raw_files_are_the_payloads(paths)
    assert result.source_by_file == {name: f"local directory {incoming / name}" for name in FILE_NAMES}


def test_custom_local_dir_missing_a_file_names_both_candidates(tmp_path):
    incoming = tmp_path / "incoming"
    write_idx_dataset(incoming, TRAIN, TEST)
    (incoming / FIRST).unlink()
    paths = DatasetPaths(tmp_path, "custom")

    with pytest.raises(DownloadError) as raised:
        download_dataset(paths, dataset_params("custom", local_dir=incoming), SETTINGS)

    assert str(raised.value) == (
        f"custom/{FIRST}: no source provided a verified file; tried:\n"
        f"  - {incoming}: neither {FIRST}.gz nor {FIRST} exists (found 3: "
        + ", ".join(sorted(path.name for path in incoming.iterdir())) + ")"
    )
    assert_nothing_in_raw_dir(paths)


@pytest.mark.parametrize(("prepare", "says"), [
    (lambda folder: None, "{folder}: no such folder (data.<dataset>.local_dir); expected a folder holding "
                          "{name}.gz or {name}"),
    (lambda folder: folder.mkdir(), "{folder}: the folder is empty; expected {name}.gz or {name}"),
    (lambda folder: (folder.mkdir(), (folder / "shirt.png").write_bytes(b"png"), (folder / "a.jpg").write_bytes(b"j")),
     "{folder}: holds 2 image files (e.g. a.jpg) but no {name}.gz or {name}; an `idx` local_dir holds the four IDX "
     "files of the MNIST layout; for a folder of images set the dataset's source to `images` "
     "(local_dir/{{train,test}}/<class>/*.png)"),
])
def test_a_local_dir_without_idx_files_says_what_it_holds_instead(tmp_path, prepare, says):
    """A missing folder, an empty one and a folder of PNG files once all gave the same "neither ... exists"."""
    incoming = tmp_path / "incoming"
    prepare(incoming)
    paths = DatasetPaths(tmp_path, "custom")

    with pytest.raises(DownloadError) as raised:
        download_dataset(paths, dataset_params("custom", local_dir=incoming), SETTINGS)

    assert f"  - {says.format(folder=incoming, name=FIRST)}" in str(raised.value).splitlines()
    assert_nothing_in_raw_dir(paths)


def test_plain_http_mirror_is_refused_by_the_config():
    document = project_params_document()
    document["data"]["mnist"]["mirrors"] = ["http://example.org/mnist"]

    with pytest.raises(ConfigError) as raised:
        parse_params(document)

    message = str(raised.value)
    assert "data.mnist.mirrors" in message
    assert "mirror 'http://example.org/mnist' is not https://" in message


def test_mnist_sample_is_a_fixed_stratified_split(tmp_path):
    params = parse_params(project_params_document()).dataset("mnist-sample")
    first, second = DatasetPaths(tmp_path / "first", "mnist-sample"), DatasetPaths(tmp_path / "second", "mnist-sample")

    result = download_dataset(first, params, SETTINGS)
    written = {name: (first.raw_dir / name).read_bytes() for name in FILE_NAMES}
    download_dataset(second, params, SETTINGS)

    assert sorted(result.source_by_file) == sorted(FILE_NAMES)
    for split, count in (("train", 4000), ("test", 1000)):
        images = idx.read_images(first.raw_file(split, "images"))
        labels = idx.read_labels(first.raw_file(split, "labels"))
        assert images.shape == (count, 28, 28)
        assert np.bincount(labels, minlength=10).tolist() == [count // 10] * 10, split
    for name, content in written.items():
        assert (second.raw_dir / name).read_bytes() == content, f"{name} differs between two runs"


def test_an_image_folder_dataset_becomes_the_four_files_and_a_rerun_rewrites_none(tmp_path):
    from tests.conftest import real_fashion_images, write_image_folder

    train, test = real_fashion_images(40, "train"), real_fashion_images(20, "test")
    names = project_params_document()["data"]["fashion-mnist"]["class_names"]
    write_image_folder(tmp_path / "shop", {"train": train, "test": test}, [n.replace("/", "-") for n in names])
    document = project_params_document()
    document["data"]["my-shop"] = {**document["data"]["custom"], "source": "images", "local_dir": str(tmp_path / "shop"),
                                   "class_names": names}
    paths = DatasetPaths(tmp_path, "my-shop")

    result = download_dataset(paths, parse_params(document).dataset("my-shop"), SETTINGS)
    written = {path.name: path.stat().st_mtime_ns for path in paths.raw_dir.iterdir()}
    download_dataset(paths, parse_params(document).dataset("my-shop"), SETTINGS)

    order = np.argsort(test[1], kind="stable")
    assert np.array_equal(idx.read_images(paths.raw_file("test", "images")), test[0][order])
    assert np.array_equal(idx.read_labels(paths.raw_file("test", "labels")), test[1][order])
    assert result.source_by_file[FIRST] == f"image folder {tmp_path / 'shop' / 'train'} (40 images)"
    assert {path.name: path.stat().st_mtime_ns for path in paths.raw_dir.iterdir()} == written
