"""`dvc push` to an S3 remote and `dvc pull` in a fresh clone, against a real S3-protocol server on loopback.

The server is moto's S3 in server mode (a real HTTP server speaking the S3 protocol, bound to 127.0.0.1 on a free
port, stopped by the fixture); DVC talks to it through dvc-s3/s3fs/botocore exactly as it would to AWS or MinIO.
The pushed files are real pipeline outputs: mnist-sample's raw IDX files, Data Docs and normalized arrays.
"""

import pytest

from tests.integration.repo import copy_repository, run

pytestmark = pytest.mark.integration
BUCKET = "mnist-pipeline"
# The project's committed config names the remote and its endpoint; the keys stay in each checkout's
# .dvc/config.local (git-ignored), as docs/SCALING.md says.
CREDENTIALS = {"access_key_id": "testing-key-id", "secret_access_key": "testing-secret"}
PUSHED = ("data/raw/mnist-sample/train-images-idx3-ubyte", "data/raw/mnist-sample/t10k-labels-idx1-ubyte",
          "data/processed/mnist-sample/train.npz", "data/processed/mnist-sample/test.npz",
          "reports/mnist-sample/data_docs/index.html")


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (free port) with an empty bucket; stopped afterwards."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=CREDENTIALS["access_key_id"],
                        aws_secret_access_key=CREDENTIALS["secret_access_key"])


def use_s3_remote(checkout, endpoint):
    run(["dvc", "remote", "add", "--force", "--default", "s3", f"s3://{BUCKET}/cache"], checkout)
    run(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], checkout)
    for option, value in CREDENTIALS.items():
        run(["dvc", "remote", "modify", "--local", "s3", option, value], checkout)


def bucket_keys(endpoint) -> list[str]:
    return [item["Key"] for item in s3_client(endpoint).list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_push_to_s3_then_pull_in_a_fresh_clone_restores_identical_files(s3_endpoint, tmp_path):
    def only_mnist_sample(document):
        document["datasets"] = ["mnist-sample"]

    repo = copy_repository(tmp_path / "repo", only_mnist_sample)
    run(["dvc", "repro", "normalize@mnist-sample"], repo)
    use_s3_remote(repo, s3_endpoint)

    pushed = run(["dvc", "push"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "data on the S3 remote"], repo)

    assert "pushed" in pushed.stdout, pushed.stdout
    assert len(bucket_keys(s3_endpoint)) >= len(PUSHED)
    assert "testing-secret" not in (repo / ".dvc/config").read_text()  # keys never reach git
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/processed/mnist-sample/train.npz").exists()
    for option, value in CREDENTIALS.items():
        run(["dvc", "remote", "modify", "--local", "s3", option, value], clone)

    run(["dvc", "pull", "--with-deps", "normalize@mnist-sample"], clone)

    for relative in PUSHED:
        assert (clone / relative).read_bytes() == (repo / relative).read_bytes(), relative
    status = run(["dvc", "status", "--with-deps", "normalize@mnist-sample"], clone).stdout.strip()
    assert status == "Data and pipelines are up to date.", status

