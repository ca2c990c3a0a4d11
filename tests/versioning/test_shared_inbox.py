"""New images for workers in clone mode go through the DVC remote's inbox (issue 26): sent by `make ingest` from one
checkout, taken whole by a run in another, deleted once its version is pushed. Against moto's S3 server on
127.0.0.1 (a real S3-protocol server), through DVC's own filesystem for the remote; the served case, a drop trained
on by a remote worker, is in tests/integration/test_remote_workers.py."""

from __future__ import annotations

import pytest

from versioning.shared_inbox import clear_fetched, drop_folder, fetch_drops, send_drop
from tasks.common.errors import PipelineError
from tests.conftest import real_fashion_images, write_image_folder
from tests.integration.repo import run
from tests.integration.test_s3_remote import BUCKET, bucket_keys, s3_client, s3_endpoint, use_s3_remote  # noqa: F401

pytestmark = pytest.mark.integration
CLASSES = [str(label) for label in range(10)]
HALF_SENT = "cache/inbox/shoes/20261206T000000000000Z-halfsent/train/0/a.png"


def checkout(folder, endpoint):
    """A DVC repository whose default remote is the S3 bucket (a developer's checkout, or a worker's clone)."""
    folder.mkdir()
    run(["dvc", "init", "--no-scm", "-q"], folder)
    use_s3_remote(folder, endpoint)
    return folder


def test_a_drop_sent_from_one_checkout_is_taken_whole_by_another_then_deleted(s3_endpoint, tmp_path):
    developer, worker = checkout(tmp_path / "developer", s3_endpoint), checkout(tmp_path / "worker", s3_endpoint)
    images = real_fashion_images(6)
    first = write_image_folder(tmp_path / "first", {"train": images}, CLASSES)
    write_image_folder(tmp_path / "second", {"train": images}, CLASSES)  # the same file names again
    # A drop still being sent: its files, no marker yet. It must not be taken.
    s3_client(s3_endpoint).put_object(Bucket=BUCKET, Key=HALF_SENT, Body=b"partial")

    url, sent = send_drop(developer, "shoes", tmp_path / "first")
    send_drop(developer, "shoes", tmp_path / "second")
    inbox = worker / "data/inbox/shoes"
    drops = fetch_drops(worker, "shoes", inbox)

    assert sent == 6 and url.startswith(f"s3://{BUCKET}/cache/inbox/shoes/") and url.rsplit("/", 1)[1] == drops[0]
    assert len(drops) == 2 and "20261206T000000000000Z-halfsent" not in drops
    taken = sorted(path.relative_to(inbox).as_posix() for path in inbox.rglob("*") if path.is_file())
    assert len(taken) == 12 and not any(name.endswith(".part") for name in taken)
    for path in first:  # the same bytes under the same place; the second drop's same names kept beside them
        relative = path.relative_to(tmp_path / "first")
        assert (inbox / relative).read_bytes() == path.read_bytes()
        assert (inbox / relative).with_name(f"{drops[1]}-{path.name}").read_bytes() == path.read_bytes()

    assert clear_fetched(worker) == drops  # the run's version is pushed
    assert [key for key in bucket_keys(s3_endpoint) if "/inbox/" in key] == [HALF_SENT]
    assert clear_fetched(worker) == [] and fetch_drops(worker, "shoes", tmp_path / "again") == []
    assert drop_folder(developer, "shoes") == f"s3://{BUCKET}/cache/inbox/shoes"


def test_without_a_folder_or_a_remote_it_says_what_to_do_in_one_line(s3_endpoint, tmp_path):
    developer = checkout(tmp_path / "developer", s3_endpoint)
    bare = tmp_path / "bare"
    bare.mkdir()
    run(["dvc", "init", "--no-scm", "-q"], bare)
    (tmp_path / "empty").mkdir()
    write_image_folder(tmp_path / "one", {"train": real_fashion_images(1)}, CLASSES)

    with pytest.raises(PipelineError, match=r"/nowhere: no such folder; expected .*/nowhere/\{train,test\}/<class>/"):
        send_drop(developer, "shoes", tmp_path / "nowhere")
    with pytest.raises(PipelineError, match=r"/empty: no files"):
        send_drop(developer, "shoes", tmp_path / "empty")
    with pytest.raises(PipelineError, match=r"no default DVC remote; new images for workers in clone mode go to its"):
        send_drop(bare, "shoes", tmp_path / "one")
    assert not [key for key in bucket_keys(s3_endpoint) if "/inbox/shoes/2" in key and "halfsent" not in key]


def test_a_remote_that_cannot_be_reached_fails_the_fetch_in_one_line_naming_it(tmp_path, monkeypatch):
    from tests.prefect_server import free_port

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore: one try at a refused connection, not 5 with backoff
    worker = checkout(tmp_path / "worker", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with pytest.raises(PipelineError) as refused:
        fetch_drops(worker, "shoes", worker / "data/inbox/shoes")

    message = str(refused.value)
    assert message.startswith(f"fetching shoes's new images from s3://{BUCKET}/cache/inbox/shoes failed: ")
    assert message.endswith("; they stay there for the next run") and "\n" not in message
    assert not (worker / "data/inbox/shoes").exists()
