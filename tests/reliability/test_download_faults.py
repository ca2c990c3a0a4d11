"""Download faults against a real HTTPS server on 127.0.0.1 (tests/https_server.py) that misbehaves on demand.

A `custom` dataset (no known checksums) is fetched from the server's mirrors over a last good run. The faulty
file is the last of the four, so the first three arrive fine: all four must be fetched and checked before any
replaces the last good raw data, which stays byte-identical whatever goes wrong.
"""

from __future__ import annotations

import gzip
import pickle

import pytest

from tasks.lib import idx
from tasks.common.config import DownloadParams, parse_params
from tasks.download import download_dataset
from tasks.common.errors import ConfigError, DownloadError
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths
from tests.conftest import make_images, project_params_document, write_idx_dataset
from tests.https_server import https_server, tls_ca  # noqa: F401 (pytest fixtures)
from tests.reliability.conftest import snapshot
from tests.tasks.test_download import PAYLOADS, flip_one_byte, generated_mnist_checksums  # noqa: F401 (fixture)

SETTINGS = DownloadParams(timeout_seconds=1, attempts=1, backoff_seconds=0)
NEW_TRAIN, NEW_TEST = make_images(60, seed=5), make_images(20, seed=6)
NEW_PAYLOADS = {
    IDX_FILE_NAMES[("train", "images")]: idx.encode_idx(NEW_TRAIN[0]),
    IDX_FILE_NAMES[("train", "labels")]: idx.encode_idx(NEW_TRAIN[1]),
    IDX_FILE_NAMES[("test", "images")]: idx.encode_idx(NEW_TEST[0]),
    IDX_FILE_NAMES[("test", "labels")]: idx.encode_idx(NEW_TEST[1]),
}
LAST = IDX_FILE_NAMES[("test", "labels")]


def custom_with_mirrors(*mirrors):
    document = project_params_document()
    document["data"]["custom"]["mirrors"] = list(mirrors)
    return parse_params(document).dataset("custom")


def serve_new_version(server, prefix, except_last=False):
    for name, payload in NEW_PAYLOADS.items():
        if not (except_last and name == LAST):
            server.routes[f"{prefix}/{name}.gz"] = ("ok", gzip.compress(payload))


FAULTS = {
    "404": (("status", 404), "HTTP 404 Not Found"),
    "403": (("status", 403), "HTTP 403 Forbidden"),
    "200 with an HTML body": (("html", b"<!DOCTYPE html><html><body>Sign in</body></html>"),
                              "not gzip data (starts with b'<!DOCTYPE html><'); expected a .gz IDX file"),
    "gzip of something that is not IDX": (("ok", gzip.compress(b"<html>maintenance</html>")),
                                          "is not an IDX header"),
    "body truncated mid-transfer": (("truncate", gzip.compress(NEW_PAYLOADS[LAST])), "body truncated: received"),
    "connection that hangs": (("hang", 3), "no data for 1 s (socket timeout)"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_faulty_mirror_leaves_the_last_good_data_alone(good_root, https_server, fault):
    behaviour, reason = FAULTS[fault]
    serve_new_version(https_server, "/mirror", except_last=True)
    https_server.routes[f"/mirror/{LAST}.gz"] = behaviour
    url = https_server.url(f"/mirror/{LAST}.gz")
    before = snapshot(good_root.root)

    with pytest.raises(DownloadError) as raised:
        download_dataset(good_root, custom_with_mirrors(https_server.url("/mirror")), SETTINGS)

    message = str(raised.value)
    assert message.startswith(f"custom/{LAST}: no source provided a verified file; tried:\n  - {url}: ")
    assert reason in message
    assert snapshot(good_root.root) == before


def test_first_mirror_403_second_serves(good_root, https_server):
    for name in NEW_PAYLOADS:
        https_server.routes[f"/first/{name}.gz"] = ("status", 403)
    serve_new_version(https_server, "/second")

    result = download_dataset(good_root, custom_with_mirrors(https_server.url("/first"), https_server.url("/second")),
                              SETTINGS)

    for name, payload in NEW_PAYLOADS.items():
        assert (good_root.raw_dir / name).read_bytes() == payload, name
        assert result.source_by_file[name] == f"mirror {https_server.url(f'/second/{name}.gz')}"


def test_all_mirrors_failing_lists_every_url_and_status(good_root, https_server):
    serve_new_version(https_server, "/a", except_last=True)
    https_server.routes[f"/a/{LAST}.gz"] = ("status", 404)
    https_server.routes[f"/b/{LAST}.gz"] = ("status", 403)
    https_server.routes[f"/c/{LAST}.gz"] = ("status", 503)
    before = snapshot(good_root.root)

    with pytest.raises(DownloadError) as raised:
        download_dataset(good_root, custom_with_mirrors(*(https_server.url(f"/{m}") for m in "abc")), SETTINGS)

    assert str(raised.value).endswith(
        f"  - {https_server.url(f'/a/{LAST}.gz')}: HTTP 404 Not Found\n"
        f"  - {https_server.url(f'/b/{LAST}.gz')}: HTTP 403 Forbidden\n"
        f"  - {https_server.url(f'/c/{LAST}.gz')}: HTTP 503 Service Unavailable")
    assert raised.value.transient  # the 503 may pass: the Prefect task retries
    assert snapshot(good_root.root) == before


@pytest.mark.parametrize("behaviour", [("status", 404), ("html", b"<html></html>"),
                                       ("ok", gzip.compress(b"not an IDX file"))], ids=["404", "html", "not IDX"])
def test_only_permanent_failures_are_not_worth_retrying(good_root, https_server, behaviour):
    serve_new_version(https_server, "/a", except_last=True)
    https_server.routes[f"/a/{LAST}.gz"] = behaviour

    with pytest.raises(DownloadError) as raised:
        download_dataset(good_root, custom_with_mirrors(https_server.url("/a")), SETTINGS)

    assert raised.value.transient is False
    # Prefect pickles the exception before its retry condition reads it.
    assert pickle.loads(pickle.dumps(raised.value)).transient is False


def test_redirect_to_plain_http_is_refused(good_root, https_server):
    serve_new_version(https_server, "/mirror", except_last=True)
    target = https_server.url(f"/elsewhere/{LAST}.gz").replace("https://", "http://")
    https_server.routes[f"/mirror/{LAST}.gz"] = ("redirect", target)
    before = snapshot(good_root.root)

    with pytest.raises(DownloadError) as raised:
        download_dataset(good_root, custom_with_mirrors(https_server.url("/mirror")), SETTINGS)

    assert f"redirect to {target!r} refused (only https:// is followed)" in str(raised.value)
    assert f"/elsewhere/{LAST}.gz" not in https_server.requests
    assert snapshot(good_root.root) == before


def test_configured_plain_http_mirror_is_refused_before_any_work():
    document = project_params_document()
    document["data"]["custom"]["mirrors"] = ["https://ok.example/mnist", "http://mirror.example/mnist"]

    with pytest.raises(ConfigError) as raised:
        parse_params(document)

    assert "data.custom.mirrors" in str(raised.value)
    assert "mirror 'http://mirror.example/mnist' is not https://" in str(raised.value)


def test_gz_file_that_is_not_gzip_in_local_dir(good_root, tmp_path):
    incoming = tmp_path / "incoming"
    write_idx_dataset(incoming, NEW_TRAIN, NEW_TEST, gzipped=True)
    (incoming / f"{LAST}.gz").write_bytes(b"<html><body>404 Not Found</body></html>")
    document = project_params_document()
    document["data"]["custom"]["local_dir"] = str(incoming)
    before = snapshot(good_root.root)

    with pytest.raises(DownloadError) as raised:
        download_dataset(good_root, parse_params(document).dataset("custom"), SETTINGS)

    assert f"{incoming / LAST}.gz: not gzip data (starts with b'<html><body>404 '" in str(raised.value)
    assert snapshot(good_root.root) == before


def test_raw_file_with_one_flipped_byte_is_detected_and_fetched_again(tmp_path, https_server):
    """A checksummed dataset: a file already in data/raw is never trusted because it exists."""
    paths = DatasetPaths(tmp_path, "mnist")
    paths.raw_dir.mkdir(parents=True)
    for name, payload in PAYLOADS.items():
        (paths.raw_dir / name).write_bytes(payload)
    flipped = IDX_FILE_NAMES[("train", "labels")]
    (paths.raw_dir / flipped).write_bytes(flip_one_byte(PAYLOADS[flipped]))
    for name, payload in PAYLOADS.items():
        https_server.routes[f"/mirror/{name}.gz"] = ("ok", gzip.compress(payload))
    document = project_params_document()
    document["data"]["mnist"].update(local_dir=None, mirrors=[https_server.url("/mirror")])

    result = download_dataset(paths, parse_params(document).dataset("mnist"), SETTINGS)

    assert https_server.requests == [f"/mirror/{flipped}.gz"]
    assert result.source_by_file[flipped] == f"mirror {https_server.url(f'/mirror/{flipped}.gz')}"
    assert {name: (paths.raw_dir / name).read_bytes() for name in PAYLOADS} == PAYLOADS
