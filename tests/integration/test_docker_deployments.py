"""The Docker work pool variant (prefect.docker.yaml), registered with `prefect deploy` on a real Prefect server.

What runs here: a real server on 127.0.0.1, `prefect work-pool create --type docker` (its job template comes from
the registry data bundled with Prefect; prefect-docker is not needed to create the pool or to deploy to it) and
`prefect deploy --all --prefect-file prefect.docker.yaml`. What cannot run here: a Docker worker and its
containers (no Docker daemon on this machine, and prefect-docker is only needed by that worker), so no flow run
is started; the test checks what the worker would receive.
"""

import pytest
import yaml

from orchestration.serve import Service, run_cli, start_server, stop
from tests.conftest import PROJECT_ROOT
from tests.integration.repo import copy_repository
from tests.prefect_server import checked_log, free_port

pytestmark = pytest.mark.integration
DOCKER_POOL = "training-docker"
IMAGE = "mnist-pipeline:test"


def deployments_in(file_name: str) -> dict[str, dict]:
    document = yaml.safe_load((PROJECT_ROOT / file_name).read_text())
    return {deployment["name"]: deployment for deployment in document["deployments"]}


def test_docker_variant_runs_the_same_flows_on_the_same_schedules_as_the_default():
    process, docker = deployments_in("prefect.yaml"), deployments_in("prefect.docker.yaml")

    assert sorted(docker) == sorted(f"{name}-docker" for name in process)
    for name, deployment in process.items():
        variant = docker[f"{name}-docker"]
        for field in ("entrypoint", "parameters", "schedules", "concurrency_limit"):
            assert variant[field] == deployment[field], (name, field)
        assert variant["work_pool"]["name"] == DOCKER_POOL and deployment["work_pool"]["name"] == "training"


@pytest.fixture(scope="module")
def docker_deployed(tmp_path_factory):
    """A server on loopback, the docker work pool and the two docker deployments; the server is stopped after
    and its log checked."""
    repo = copy_repository(tmp_path_factory.mktemp("docker-repo"), lambda document: None)
    service = Service(home=tmp_path_factory.mktemp("prefect-home"), root=repo, port=free_port())
    with checked_log(service.log_file("server"), stop_server=lambda: stop(service)):
        start_server(service)
        run_cli(service, "work-pool", "create", DOCKER_POOL, "--type", "docker")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PIPELINE_IMAGE", IMAGE)  # Service.environment() passes it on to `prefect deploy`
            deployed = run_cli(service, "deploy", "--all", "--prefect-file", "prefect.docker.yaml", check=False)
        yield service, deployed


def read_from_server(service: Service):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        pool = client.read_work_pool(DOCKER_POOL)
        deployments = {name: client.read_deployment_by_name(f"training-pipeline/{name}")
                       for name in ("fashion-mnist-docker", "mnist-sample-docker")}
    return pool, deployments


def test_prefect_deploy_registers_the_docker_deployments(docker_deployed):
    service, deployed = docker_deployed
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    pool, deployments = read_from_server(service)

    assert pool.type == "docker" and "image" in pool.base_job_template["variables"]["properties"]
    for name, deployment in deployments.items():
        assert deployment.work_pool_name == DOCKER_POOL, name
        assert deployment.entrypoint == "flows/training.py:training_pipeline"
        assert deployment.job_variables["image"] == IMAGE
        assert deployment.job_variables["volumes"] == [f"{service.root}:/workspace"]
        assert deployment.job_variables["network_mode"] == "host"
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                          {"directory": "/workspace"}}]
        assert deployment.parameters == {"dataset": name.removesuffix("-docker")}
        assert [schedule.active for schedule in deployment.schedules] == [True]
    assert deployments["fashion-mnist-docker"].schedules[0].schedule.cron == "0 3 * * 1"
