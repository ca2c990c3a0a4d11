"""The deployments `make serve` makes, derived from params.yaml, on a real Prefect server (no worker: nothing runs).

What the server holds after each deploy is what its scheduler, triggers and worker act on: a dataset added to
params.yaml gets its deployment with its schedule, its inbox trigger and its one-run-at-a-time limits; one taken
out loses it; a schedule the operator paused stays paused across deploys, even when its cron changes. That the
schedule then fires and the trigger starts a run is shown with a worker in test_schedules.py and test_triggers.py
(slow). The Docker pool variant gets the same deployments; no Docker daemon runs here, so no container starts.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from orchestration.deployments import (DOCKER_POOL_NAME, DROP_EVENT, FLOW_NAME, WORK_POOL, apply_deployments,
                                       dataset_resource, docker_pool)
from orchestration.serve import Service, run_cli, start_server, stop
from tasks.common.config import parse_params
from tests.conftest import PROJECT_ROOT
from tests.prefect_server import api_client, checked_log, free_port
from tests.integration.repo import run

pytestmark = pytest.mark.integration
NEW = "handwritten-digits"


def params_with(datasets, **schedules):
    """The project's params.yaml listing `datasets`, with a new image-folder dataset NEW defined (no schedule key:
    the default) and `schedules` set per dataset."""
    document = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    document["data"][NEW] = {**copy.deepcopy(document["data"]["mnist-sample"]), "source": "images",
                             "local_dir": "/srv/digits", "expected_counts": None}
    del document["data"][NEW]["schedule"]
    for name, schedule in schedules.items():
        document["data"][name]["schedule"] = schedule
    document["datasets"] = list(datasets)
    return parse_params(document)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    service = Service(home=tmp_path_factory.mktemp("prefect-home"), root=PROJECT_ROOT, port=free_port())
    with checked_log(service.log_file("server"), stop_server=lambda: stop(service)):
        start_server(service)
        run_cli(service, "work-pool", "create", WORK_POOL, "--type", "process")
        yield service


def deployments_on(service: Service, pool: str = WORK_POOL) -> dict:
    with api_client(service) as client:
        return {deployment.name: deployment for deployment in client.read_deployments()
                if deployment.work_pool_name == pool}


def test_every_listed_dataset_is_deployed_with_its_schedule_trigger_and_run_limit(server, tmp_path):
    applied = apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]))

    deployments = deployments_on(server)
    assert sorted(deployments) == sorted(applied.deployed) == ["handwritten-digits", "mnist-sample"]
    with api_client(server) as client:
        for name, deployment in deployments.items():
            assert deployment.parameters == {"dataset": name}
            assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                              {"directory": str(tmp_path)}}]
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
            queue = client.read_work_queue_by_name(name, work_pool_name=WORK_POOL)
            assert deployment.work_queue_name == name and queue.concurrency_limit == 1
            automations = client.read_automations_by_name(f"{name}: new data in its inbox")
            assert len(automations) == 1
            trigger = automations[0].trigger
            assert trigger.match.model_dump()["prefect.resource.id"] == dataset_resource(name)
            assert trigger.expect == {DROP_EVENT}
            assert automations[0].actions[0].deployment_id == deployment.id
    assert [(each.schedule.cron, each.active)
            for each in deployments["mnist-sample"].schedules] == [("0 2 * * *", True)]
    assert [(each.schedule.cron, each.active) for each in deployments[NEW].schedules] == [("0 3 * * 1", True)]


def test_a_dataset_taken_out_of_params_loses_its_deployment_and_its_trigger(server, tmp_path):
    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]))

    applied = apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"]))

    assert applied.removed == [NEW] and sorted(deployments_on(server)) == ["mnist-sample"]
    with api_client(server) as client:
        assert not client.read_automations_by_name(f"{NEW}: new data in its inbox")


def test_a_paused_schedule_stays_paused_across_deploys_and_a_cron_change(server, tmp_path):
    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]))
    paused = run_cli(server, "deployment", "schedule", "pause", "--all")  # docs/OPERATIONS.md's command
    assert paused.returncode == 0, paused.stdout + paused.stderr

    again = apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]))
    changed = apply_deployments(server.api_url, tmp_path,
                                params_with(["mnist-sample", NEW], **{"mnist-sample": {"cron": "30 4 * * *"}}))

    assert again.paused == changed.paused == ["handwritten-digits", "mnist-sample"]
    deployments = deployments_on(server)
    assert [(each.schedule.cron, each.active)
            for each in deployments["mnist-sample"].schedules] == [("30 4 * * *", False)]
    assert [each.active for each in deployments[NEW].schedules] == [False]
    resumed = run_cli(server, "deployment", "schedule", "resume", f"{FLOW_NAME}/{NEW}",
                      str(deployments[NEW].schedules[0].id))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]))
    assert after.paused == ["mnist-sample"]
    assert [each.active for each in deployments_on(server)[NEW].schedules] == [True]
    with api_client(server) as client:  # five deploys, one trigger each
        assert len(client.read_automations_by_name(f"{NEW}: new data in its inbox")) == 1


def test_a_dataset_without_schedule_has_none_and_an_interval_is_seconds(server, tmp_path):
    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW], **{"mnist-sample": None,
                                                                                       NEW: {"interval": 15}}))
    deployments = deployments_on(server)
    assert deployments["mnist-sample"].schedules == []
    assert [each.schedule.interval.total_seconds() for each in deployments[NEW].schedules] == [15]


def test_the_docker_pool_gets_the_same_deployments_in_containers(server, tmp_path):
    """What a Docker worker would receive (no Docker daemon here, so no container starts)."""
    run_cli(server, "work-pool", "create", DOCKER_POOL_NAME, "--type", "docker")
    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]))

    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample", NEW]),
                      docker_pool("pipeline:test", tmp_path))

    docker, process = deployments_on(server, DOCKER_POOL_NAME), deployments_on(server)
    assert sorted(docker) == ["handwritten-digits-docker", "mnist-sample-docker"]
    assert sorted(process) == ["handwritten-digits", "mnist-sample"]  # the other pool's are left alone
    for name, deployment in docker.items():
        twin = process[name.removesuffix("-docker")]
        assert deployment.parameters == twin.parameters and deployment.entrypoint == twin.entrypoint
        assert [each.schedule for each in deployment.schedules] == [each.schedule for each in twin.schedules]
        assert deployment.job_variables["image"] == "pipeline:test"
        assert deployment.job_variables["volumes"] == [f"{tmp_path}:/workspace"]
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                          {"directory": "/workspace"}}]


def test_ingest_for_a_dataset_without_a_deployment_refuses_before_copying(server, tmp_path, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from orchestration.inbox import main
    from tests.conftest import real_fashion_images, write_image_folder

    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"]))
    params_file = tmp_path / "params.yaml"
    document = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    document["datasets"] = ["mnist-sample", "fashion-mnist"]  # listed, but not deployed on this server
    params_file.write_text(yaml.safe_dump(document))
    write_image_folder(tmp_path / "drop", {"train": real_fashion_images(3)}, [str(i) for i in range(10)])
    monkeypatch.chdir(tmp_path)
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)  # a DVC repository without a remote

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        code = main(["--dataset", "fashion-mnist", "--from", str(tmp_path / "drop"), "--params", str(params_file)])

    error = capsys.readouterr()
    assert code == 1 and error.err.count("\n") == 1 and "runs now" not in error.out + error.err
    assert re.search(r"has no deployment training-pipeline/fashion-mnist, so nothing would run: run `make serve` "
                     r"again", error.err)
    assert not (tmp_path / "data").exists()  # nothing was copied into an inbox


def test_clone_mode_runs_clone_the_git_remote_and_ingest_without_a_dvc_remote_is_refused(server, tmp_path,
                                                                                          monkeypatch, capsys):
    """Clone mode (PIPELINE_GIT_REMOTE): each run clones the remote on its worker (tests/integration/
    test_remote_workers.py runs them); files copied into this checkout's inbox would never reach it, so a drop goes
    to the DVC remote's inbox (tests/versioning/test_shared_inbox.py): without a DVC remote, it is refused."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from orchestration.deployments import clone_pool
    from orchestration.inbox import main
    from versioning.remote import REMOTE_RUN_VARIABLE
    from tests.conftest import real_fashion_images, write_image_folder

    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"]),
                      clone_pool("file:///srv/git/pipeline.git", "main"))
    deployment = deployments_on(server)["mnist-sample"]
    (step,) = deployment.pull_steps
    assert step["prefect.deployments.steps.git_clone"]["repository"] == "file:///srv/git/pipeline.git"
    assert step["prefect.deployments.steps.git_clone"]["branch"] == "main"
    assert deployment.job_variables["env"][REMOTE_RUN_VARIABLE] == "1"
    write_image_folder(tmp_path / "drop", {"train": real_fashion_images(3)}, [str(i) for i in range(10)])
    monkeypatch.chdir(tmp_path)
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)  # a DVC repository without a remote

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        code = main(["--dataset", "mnist-sample", "--from", str(tmp_path / "drop"),
                     "--params", str(PROJECT_ROOT / "params.yaml")])

    error = capsys.readouterr().err
    assert code == 1 and error.count("\n") == 1, error
    assert error.startswith(f"ingest failed for mnist-sample: {tmp_path}: no default DVC remote; new images for "
                            "workers in clone mode go to its inbox/ prefix"), error
    assert not (tmp_path / "data").exists()
    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"]))  # back to local mode
    assert deployments_on(server)["mnist-sample"].pull_steps[0] == {
        "prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}


def test_a_deployment_paused_as_a_whole_stays_paused_across_deploys(server, tmp_path):
    apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"]))
    with api_client(server) as client:
        client.pause_deployment(deployments_on(server)["mnist-sample"].id)  # the UI's toggle

    applied = apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"]))

    assert applied.paused == ["mnist-sample"] and deployments_on(server)["mnist-sample"].paused
    with api_client(server) as client:
        client.resume_deployment(deployments_on(server)["mnist-sample"].id)
    assert apply_deployments(server.api_url, tmp_path, params_with(["mnist-sample"])).paused == []
    assert not deployments_on(server)["mnist-sample"].paused


@pytest.mark.parametrize(("schedule", "says"), [
    ({"cron": "61 3 * * 1"}, "data.mnist-sample.schedule: cron '61 3 * * 1' (UTC) is not a valid schedule: "),
    ({"cron": "0 3 * * 1", "timezone": "Mars/Olympus"},
     "data.mnist-sample.schedule: cron '0 3 * * 1' (Mars/Olympus) is not a valid schedule: "),
])
def test_a_schedule_prefect_cannot_read_is_one_line_before_anything_starts(schedule, says):
    """`make serve` checks them before it starts a server (a bad cron failed after it, with a traceback)."""
    from orchestration.deployments import check_schedules
    from tasks.common.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(says)) as raised:
        check_schedules(params_with(["mnist-sample"], **{"mnist-sample": schedule}))
    assert "\n" not in str(raised.value)
