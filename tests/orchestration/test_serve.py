"""orchestration/serve.py without a server: each deployment's work-queue limit, as read from prefect.yaml.

Serving itself (server, pool, queues, deployments, worker) runs in tests/integration/test_schedules.py and
tests/integration/test_deployments.py, and the queues' effect under load in tests/reliability/test_prefect_faults.py.
"""

import pytest
import yaml

from orchestration.serve import queue_limits
from tests.conftest import PROJECT_ROOT


def test_each_deployment_of_the_project_gets_a_queue_of_its_own_with_its_limit():
    deployments = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]

    limits = queue_limits(PROJECT_ROOT / "prefect.yaml")

    assert len(limits) == len(deployments)
    for deployment in deployments:
        queue = (deployment["work_pool"]["name"], deployment["work_pool"]["work_queue_name"])
        assert limits[queue] == deployment["concurrency_limit"]["limit"]


def test_two_deployments_sharing_a_queue_are_refused_naming_the_second(tmp_path):
    document = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    first, second = document["deployments"][:2]
    second["work_pool"] = dict(first["work_pool"])
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(document))

    with pytest.raises(ValueError, match=rf"deployments.{second['name']}.work_pool: work queue "
                                         rf"'{first['work_pool']['work_queue_name']}' is already another "
                                         "deployment's"):
        queue_limits(prefect_file)
