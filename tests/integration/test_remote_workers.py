"""Workers that do not hold the repository: three machines simulated on this one (docs/SCALING.md).

- the remotes: a bare git repository (a file:// URL) and a DVC remote on moto's S3 server on 127.0.0.1;
- the server: Prefect on PostgreSQL (a database in the session's server, tests/postgres.py), its deployments made
  in clone mode from the developer's checkout;
- two workers, each with its own working root and PREFECT_HOME, started outside the developer's checkout: each
  flow run clones the git remote into a fresh folder (Prefect's git_clone step), pulls its data with DVC, trains,
  and pushes back: `dvc push` first, then the branch and the registry tags in one `git push --atomic`.

Two datasets (mnist-sample and a small image folder of real digits; dense model, 2 epochs) retrain at the same time,
one on each worker; the second to finish finds the remote moved on, rebases and pushes. A drop of new images sent
from the developer's checkout (`make ingest`: the DVC remote's inbox) is trained on by a worker. A third fresh clone
then sees the versions in `make history`, pulls the models, and a second promotion is v2.0.0 on the remote.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestration.deployments import WORK_POOL, apply_deployments, clone_pool
from orchestration.serve import Service, prefect_command, run_cli, start_server, stop
from tasks.common.config import load_params
from tests.integration.repo import VENV_BIN, copy_repository, run
from tests.integration.test_s3_remote import BUCKET, CREDENTIALS, bucket_keys, s3_endpoint  # noqa: F401
from tests.integration.test_triggers import DIGITS, handwritten_digits, runs_of_deployment, tilted_digits
from tests.prefect_server import (FAST_POLLING, api_client, checked_log, database_environment, free_port,
                                  process_command_lines)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
IMAGES = "handwritten-digits"
SECRET_KEYS = {"AWS_ACCESS_KEY_ID": CREDENTIALS["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": CREDENTIALS["secret_access_key"]}
# Only to keep the suite short: botocore tries a refused connection once instead of 5 times with backoff (an
# unreachable DVC remote failed the run after 2 minutes of retries with the defaults).
ONE_TRY = {"AWS_MAX_ATTEMPTS": "1"}
DROPPED = 100  # new images sent through the shared inbox


def developer_checkout(tmp_path_factory, endpoint: str) -> tuple[Path, str, str]:
    """The developer's repository with two small datasets and the S3 DVC remote, pushed to a bare git remote;
    (checkout, the remote's file:// URL, the branch)."""
    folder = tmp_path_factory.mktemp("shared-digits")  # the image folder's local_dir: a mount every worker has
    handwritten_digits(folder)

    def two_small_datasets(document):
        document["datasets"] = ["mnist-sample", IMAGES]
        document["data"][IMAGES] = {"source": "images", "local_dir": str(folder), "mirrors": [],
                                    "class_names": DIGITS, "expected_counts": None, "threshold": 0.99,
                                    "min_accuracy": 0.0, "framing": "mass", "train": {}}
        document["data"]["mnist-sample"].update(min_accuracy=0.0, train={"epochs": 2})
        document["train"].update(model="dense", epochs=2)
        document["promote"]["max_accuracy_drop"] = 1.0  # a retrained champion is promoted again (v2.0.0)

    checkout = copy_repository(tmp_path_factory.mktemp("developer"), two_small_datasets)
    run(["dvc", "remote", "add", "--force", "--default", "s3", f"s3://{BUCKET}/cache"], checkout)
    run(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], checkout)
    run(["git", "commit", "-qam", "DVC remote: S3"], checkout)
    remote = tmp_path_factory.mktemp("remotes") / "pipeline.git"
    run(["git", "clone", "-q", "--bare", str(checkout), str(remote)], checkout.parent)
    branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], checkout).stdout.strip()
    return checkout, f"file://{remote}", branch


def start_worker(service: Service, root: Path, name: str) -> subprocess.Popen:
    """A worker on "another machine": its own working root (flow runs clone into a fresh folder under it) and
    PREFECT_HOME, the server's address, the DVC remote's keys; no path into the developer's checkout."""
    (root / "tmp").mkdir(parents=True)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("PREFECT_", "PYTHONPATH", "PIPELINE_"))}
    environment.update(PREFECT_HOME=str(root / "prefect-home"), PREFECT_API_URL=service.api_url,
                       TMPDIR=str(root / "tmp"),
                       PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                       **FAST_POLLING, **SECRET_KEYS, **ONE_TRY)
    log = open(root / "worker.log", "ab")
    return subprocess.Popen(prefect_command("worker", "start", "--pool", WORK_POOL, "--name", name, "--limit", "1"),
                            cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_final(service: Service, run_ids: list, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        with api_client(service) as client:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
        if all(run.state.is_final() for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"not final after {seconds:.0f} s: {[(run.name, run.state_name) for run in runs]}")
        time.sleep(2)


def submit(service: Service, dataset: str, parameters: dict | None = None):
    with api_client(service) as client:
        deployment = client.read_deployment_by_name(f"training-pipeline/{dataset}")
        return client.create_flow_run_from_deployment(deployment.id, parameters=parameters or {}).id


def triggered_run(service: Service, dataset: str, since: datetime, seconds: float = 120):
    """The id of the first flow run of `dataset`'s deployment created after `since` (by its trigger)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if created := sorted((run.created, run.id) for run in runs_of_deployment(service, since, dataset)):
            return created[0][1]
        time.sleep(1)
    raise AssertionError(f"no run of {dataset} within {seconds:.0f} s of the drop")


def promotion_at(remote: str, subject: str, folder: Path) -> dict:
    """The promote stage's decision (reports/<dataset>/promotion.json) at the remote's commit whose subject holds
    `subject`."""
    run(["git", "clone", "-q", remote, str(folder / "clone")], folder)
    (line,) = [line for line in run(["git", "log", "--format=%H %s"], folder / "clone").stdout.splitlines()
               if subject in line]
    return json.loads(run(["git", "show", f"{line.split()[0]}:reports/{IMAGES}/promotion.json"],
                          folder / "clone").stdout)


def kill_the_worker_running(service: Service, flow_run_id, workers: list[subprocess.Popen]) -> str:
    """`kill -9` of the worker whose flow run `flow_run_id` is in its train stage; the killed worker's name."""
    from tests.reliability.test_crashed_runs import flow_run_process, wait_training

    wait_training(service, str(flow_run_id))
    parent = int((Path("/proc") / str(flow_run_process(str(flow_run_id))) / "stat").read_text()
                 .rsplit(")", 1)[1].split()[1])
    (worker,) = [worker for worker in workers if worker.pid == parent]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    return worker.args[worker.args.index("--name") + 1]


@pytest.fixture(scope="module")
def three_machines(tmp_path_factory, s3_endpoint):
    checkout, remote, branch = developer_checkout(tmp_path_factory, s3_endpoint)
    service = Service(home=tmp_path_factory.mktemp("server-home"), root=checkout, port=free_port())
    workers_root = tmp_path_factory.mktemp("workers")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in database_environment("postgresql", "remote").items():
            patch.setenv(key, value)
        with checked_log(service.log_file("server"), stop_server=lambda: stop(service), database="postgresql"):
            start_server(service)
            run_cli(service, "work-pool", "create", WORK_POOL, "--type", "process")
            apply_deployments(service.api_url, checkout, load_params(checkout / "params.yaml"),
                              clone_pool(remote, branch))
            workers = [start_worker(service, workers_root / name, name) for name in ("worker-a", "worker-b")]
            try:
                both = wait_final(service, [submit(service, "mnist-sample"), submit(service, IMAGES)], 600)
                commands = process_command_lines()  # what `ps` shows while the workers run
                # New images, as a team member sends them from the developer's checkout: `make ingest` puts them
                # in the DVC remote's inbox, and the dataset's trigger runs its deployment on a worker.
                drop = tmp_path_factory.mktemp("drop")
                tilted_digits(drop, DROPPED)
                since = datetime.now(timezone.utc)
                ingest = run([sys.executable, "-m", "orchestration.inbox", "--dataset", IMAGES, "--from", str(drop)],
                             checkout, env={"PREFECT_API_URL": service.api_url, **SECRET_KEYS}).stdout
                (dropped,) = wait_final(service, [triggered_run(service, IMAGES, since)], 600)
                drop_promotion = promotion_at(remote, f"run {dropped.name} ", tmp_path_factory.mktemp("drop-clone"))
                # The same images again under other names: every file a duplicate, nothing to version (issue 30
                # item 5). (Under the same names and bytes they would be known as taken already, not refused.)
                again = tmp_path_factory.mktemp("same-images")
                for image in [path for path in drop.rglob("*") if path.is_file()]:
                    renamed = again / image.relative_to(drop).with_name(f"again-{image.name}")
                    renamed.parent.mkdir(parents=True, exist_ok=True)
                    renamed.write_bytes(image.read_bytes())
                since = datetime.now(timezone.utc)
                run([sys.executable, "-m", "orchestration.inbox", "--dataset", IMAGES, "--from", str(again)],
                    checkout, env={"PREFECT_API_URL": service.api_url, **SECRET_KEYS})
                (resent,) = wait_final(service, [triggered_run(service, IMAGES, since)], 600)
                # another seed: other model bytes, a second champion (the same bytes again would be the same version);
                # long enough to kill its worker mid-training (issue 26: a killed worker loses no run)
                again_id = submit(service, "mnist-sample", {"force": True, "overrides": {
                    "train.seed": 7, "data.mnist-sample.train.epochs": 30, "data.mnist-sample.threshold": 1.0}})
                killed = kill_the_worker_running(service, again_id, workers)
                again = wait_final(service, [again_id], 600)
                # The DVC remote becomes unreachable (its endpoint a closed port, pushed as the team would).
                run(["git", "pull", "-q", remote, branch], checkout)
                run(["dvc", "remote", "modify", "s3", "endpointurl", f"http://127.0.0.1:{free_port()}"], checkout)
                run(["git", "commit", "-qam", "DVC remote: moved"], checkout)
                run(["git", "push", "-q", remote, f"HEAD:{branch}"], checkout)
                head = run(["git", "ls-remote", remote, branch], checkout).stdout
                unreachable = wait_final(service, [submit(service, "mnist-sample", {"force": True})], 400)
                head_after = run(["git", "ls-remote", remote, branch], checkout).stdout
            finally:
                for worker in workers:
                    if worker.poll() is not None:  # the one killed
                        continue
                    os.killpg(worker.pid, signal.SIGTERM)
                    try:
                        worker.wait(timeout=60)
                    except subprocess.TimeoutExpired:  # once in CI, on a machine busy with other suites
                        print("a worker did not stop within 60 s of SIGTERM; killed")
                        os.killpg(worker.pid, signal.SIGKILL)
                        worker.wait(timeout=30)
    yield {"checkout": checkout, "remote": remote, "endpoint": s3_endpoint, "branch": branch, "both": both,
           "again": again, "ingest": ingest, "dropped": dropped, "drop_promotion": drop_promotion,
           "workers_root": workers_root, "unreachable": unreachable, "heads": (head, head_after),
           "commands": commands, "server_log": service.log_file("server"), "killed": killed,
           "resent": resent}


def test_two_datasets_retrain_at_the_same_time_one_on_each_worker(three_machines):
    both = three_machines["both"]

    assert [run.state_name for run in both] == ["Completed", "Completed"], [run.state.message for run in both]
    first, second = sorted(both, key=lambda run: run.start_time)
    assert second.start_time < first.end_time  # at the same time: each worker takes one run (--limit 1)
    logs = {name: (three_machines["workers_root"] / name / "worker.log").read_text()
            for name in ("worker-a", "worker-b")}
    assert all(any(str(run.id) in log for run in both) for log in logs.values()), "a worker ran no flow run"
    # Both cloned the same commit; the second to push found the remote moved on, rebased and pushed again.
    assert sum("(push 1 of 5 refused): rebasing" in log for log in logs.values()) == 1, logs
    assert sum(f"rebased {dataset}'s version onto origin/" in "".join(logs.values())
               for dataset in ("mnist-sample", IMAGES)) == 1


def test_the_remote_history_is_linear_each_run_on_the_one_before(three_machines, tmp_path):
    """No merge commit, no force-push: the four runs' commits follow one another on the branch."""
    clone = tmp_path / "history"
    run(["git", "clone", "-q", three_machines["remote"], str(clone)], tmp_path)
    commits = [line.split(" ", 2) for line in run(["git", "log", "--format=%H %P %s"], clone).stdout.splitlines()]
    assert not run(["git", "log", "--merges", "--format=%H"], clone).stdout.strip()
    runs = [commit for commit in commits if re.search(r": (started by hand|triggered by .*) run ", commit[2])]
    assert len(runs) == 4 and all(runs[index][1] == runs[index + 1][0] for index in range(3)), commits


def test_a_drop_sent_from_the_developers_checkout_is_trained_on_by_a_worker(three_machines, tmp_path):
    """Issue 26: new images reach workers that do not hold the repository, through the DVC remote's inbox."""
    dropped, ingest = three_machines["dropped"], three_machines["ingest"]
    assert f"sent {DROPPED} file(s) to the shared inbox s3://{BUCKET}/cache/inbox/{IMAGES}/" in ingest, ingest
    assert dropped.state_name == "Completed", dropped.state.message
    clone = tmp_path / "after-the-drop"
    run(["git", "clone", "-q", three_machines["remote"], str(clone)], tmp_path)
    (commit,) = [line.split(" ", 1)[0] for line in run(["git", "log", "--format=%H %s"], clone).stdout.splitlines()
                 if f"run {dropped.name} " in line]
    ingested = json.loads(run(["git", "show", f"{commit}:reports/{IMAGES}/ingest.json"], clone).stdout)
    assert ingested["images_added"]["train"] == DROPPED, ingested  # versioned, then trained on:
    trained, before = (json.loads(run(["git", "show", f"{revision}:reports/{IMAGES}/training.json"], clone).stdout)
                       for revision in (commit, f"{commit}~1"))
    assert (trained["train_images"] + trained["validation_images"]
            == before["train_images"] + before["validation_images"] + DROPPED), (trained, before)
    log = "".join((three_machines["workers_root"] / name / "worker.log").read_text()
                  for name in ("worker-a", "worker-b"))
    assert "shared inbox: 1 drop(s) of new images fetched" in log and "shared inbox: 1 drop(s) deleted" in log
    assert not [key for key in bucket_keys(three_machines["endpoint"]) if "/inbox/" in key]  # taken once


def test_a_drop_of_images_already_taken_is_refused_makes_no_version_and_leaves_the_remote_inbox(three_machines,
                                                                                               tmp_path):
    """Issue 30 item 5 on a worker: the second sending of the same images adds nothing, so the run commits and
    pushes nothing; it deletes the drop from the DVC remote's inbox all the same (no version will), or every later
    run would fetch and refuse it again."""
    resent = three_machines["resent"]
    assert resent.state_name == "Completed", resent.state.message
    clone = tmp_path / "after-the-resend"
    run(["git", "clone", "-q", three_machines["remote"], str(clone)], tmp_path)
    assert f"run {resent.name} " not in run(["git", "log", "--format=%s"], clone).stdout
    log = "".join((three_machines["workers_root"] / name / "worker.log").read_text()
                  for name in ("worker-a", "worker-b"))
    assert f"nothing added: all {DROPPED} new file(s) refused ({DROPPED} duplicate(s), 0 leakage, 0 quarantined)" \
        in log
    assert "shared inbox: 1 drop(s) deleted from the DVC remote: they added no image" in log
    assert not [key for key in bucket_keys(three_machines["endpoint"]) if "/inbox/" in key]


def test_each_version_is_on_the_remotes_and_a_fresh_clone_lists_and_pulls_them(three_machines, tmp_path):
    clone = tmp_path / "third"
    run(["git", "clone", "-q", three_machines["remote"], str(clone)], tmp_path)
    log = run(["git", "log", "--format=%s"], clone).stdout.splitlines()
    assert sum(line.startswith("mnist-sample: started by hand") for line in log) == 2, log
    assert sum(line.startswith(f"{IMAGES}: started by hand") for line in log) == 1, log
    for dataset in ("mnist-sample", IMAGES):
        history = run([sys.executable, "-m", "versioning.history", "--dataset", dataset], clone).stdout
        assert "promoted" in history, history
    # every output each commit names is on the DVC remote: the whole pipeline pulls, and nothing differs (at the
    # drop's run, before the seed-7 run, whose dvc.lock records its override, which params.yaml does not keep)
    run(["git", "checkout", "-q", "HEAD~2"], clone)
    run(["dvc", "pull"], clone, env=SECRET_KEYS)
    for dataset in ("mnist-sample", IMAGES):
        assert (clone / "models" / dataset / "production" / "model.keras").is_file()
    status = run(["dvc", "status"], clone).stdout.strip()
    assert status == "Data and pipelines are up to date.", status
    # nothing ran in the developer's checkout: every run happened in a clone on a worker
    for dataset in ("mnist-sample", IMAGES):
        assert not (three_machines["checkout"] / "models" / dataset / "model.keras").exists()
        assert not (three_machines["checkout"] / "data" / "processed" / dataset / "train.npz").exists()


def test_promoting_twice_gives_v1_and_v2_on_the_remote(three_machines):
    again = three_machines["again"]
    assert [run.state_name for run in again] == ["Completed"], [run.state.message for run in again]

    tags = run(["git", "ls-remote", "--tags", three_machines["remote"]], Path.cwd()).stdout
    assert "refs/tags/mnist-sample-model@v1.0.0" in tags and "refs/tags/mnist-sample-model@v2.0.0" in tags, tags
    # the image folder's second version is the drop's run, when it promoted its model (promotion.json at its commit)
    promoted = three_machines["drop_promotion"]["promoted"]
    assert f"refs/tags/{IMAGES}-model@v1.0.0" in tags and (f"{IMAGES}-model@v2.0.0" in tags) == promoted, tags
    assert f"{IMAGES}-model@v3.0.0" not in tags


def test_an_unreachable_dvc_remote_fails_the_run_in_one_line_and_the_git_remote_is_left_alone(three_machines):
    (failed,) = three_machines["unreachable"]
    head, head_after = three_machines["heads"]

    assert failed.state_name == "Failed"
    assert "dvc pull of mnist-sample's outputs from the default DVC remote failed: " in failed.state.message
    assert "\n" not in failed.state.message and "Traceback" not in failed.state.message
    assert head_after == head  # no commit reached the git remote


def test_a_run_whose_worker_is_killed_mid_training_completes_and_the_other_worker_takes_the_next(three_machines):
    """Issue 26: `kill -9` of one worker mid-run loses no run. The run lives on and pushes its version (v2.0.0, the
    test above), and the next run goes to the worker still alive."""
    (again,) = three_machines["again"]
    (unreachable,) = three_machines["unreachable"]
    survivor = ({"worker-a", "worker-b"} - {three_machines["killed"]}).pop()
    survivor_log = (three_machines["workers_root"] / survivor / "worker.log").read_text()

    assert again.state_name == "Completed", again.state.message
    assert str(unreachable.id) in survivor_log


def test_the_s3_keys_are_in_no_log_no_commit_and_no_command_line(three_machines):
    """Issue 26: the DVC remote's keys live in the workers' environment only."""
    commands = three_machines["commands"]
    logs = "".join(path.read_text(errors="replace") for path in [*three_machines["workers_root"].rglob("*.log"),
                                                                 three_machines["server_log"]])
    # (the tests' own sources, which the remote holds too, name moto's fixed test keys: left out)
    history = run(["git", "log", "-p", "--all", "--", ".", ":(exclude)tests"],
                  Path(three_machines["remote"].removeprefix("file://"))).stdout

    assert "worker start" in commands and "worker-a" in commands
    assert "dvc push: " in logs  # the logs hold the runs' own lines
    for text in (commands, logs, history):
        for secret in SECRET_KEYS.values():
            assert secret not in text
