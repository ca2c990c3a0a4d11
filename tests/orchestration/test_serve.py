"""orchestration/serve.py without a server: each deployment's work-queue limit, as read from prefect.yaml.

Serving itself (server, pool, queues, deployments, worker) runs in tests/integration/test_schedules.py and
tests/integration/test_deployments.py; the queues' effect (waiting runs are not bounced) is checked there and under
load in tests/reliability/test_prefect_faults.py.
"""

import re

import pytest
import yaml

from orchestration.serve import AUTH_VARIABLE, SERVER_AUTH_VARIABLE, ServeError, check_auth, queue_limits
from tests.conftest import PROJECT_ROOT


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


def test_stopping_forgets_the_served_address_but_not_one_the_user_set(tmp_path):
    from orchestration.serve import Service, forget_api_url

    service = Service(home=tmp_path / "home", root=PROJECT_ROOT, port=4299)
    service.home.mkdir()
    profiles = service.home / "profiles.toml"
    profiles.write_text(f'active = "ephemeral"\n\n[profiles.ephemeral]\nPREFECT_API_URL = "{service.api_url}"\n'
                        'PREFECT_SERVER_ANALYTICS_ENABLED = "false"\n')

    forget_api_url(service)

    assert "PREFECT_API_URL" not in profiles.read_text()
    assert 'PREFECT_SERVER_ANALYTICS_ENABLED = "false"' in profiles.read_text()
    elsewhere = 'active = "ephemeral"\n\n[profiles.ephemeral]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n'
    profiles.write_text(elsewhere)
    forget_api_url(service)
    assert profiles.read_text() == elsewhere


@pytest.mark.parametrize(("host", "environment", "message"), [
    ("0.0.0.0", {}, "PIPELINE_SERVE_HOST=0.0.0.0: a server beyond loopback must require auth; set "
                    "PREFECT_API_AUTH_STRING="),
    ("127.0.0.1", {SERVER_AUTH_VARIABLE: "a:b"}, "PREFECT_SERVER_API_AUTH_STRING is set but PREFECT_API_AUTH_STRING is "
                                                 "not set: the worker and the flow runs would be refused"),
    ("127.0.0.1", {AUTH_VARIABLE: "nocolon"}, "PREFECT_API_AUTH_STRING: expected 'user:password'"),
])
def test_serving_refuses_what_would_answer_strangers_or_lock_out_the_worker(host, environment, message):
    with pytest.raises(ServeError, match=re.escape(message)):
        check_auth(host, environment)
    check_auth("0.0.0.0", {AUTH_VARIABLE: "pipeline:a-long-secret"})  # beyond loopback with auth: allowed
