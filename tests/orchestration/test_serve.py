"""orchestration/serve.py without a server: the profile `make stop` cleans, the auth `make serve` requires.

Serving itself (server, pool, queues, deployments, worker) runs in tests/integration/test_deployments_from_params.py,
test_schedules.py and test_deployments.py; the queues' effect (waiting runs are not bounced) is checked there and
under load in tests/reliability/test_prefect_faults.py.
"""

import re

import pytest

from orchestration.serve import AUTH_VARIABLE, SERVER_AUTH_VARIABLE, ServeError, check_auth
from tests.conftest import PROJECT_ROOT


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
