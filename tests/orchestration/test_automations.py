"""The payload a plain webhook receives, rendered by Prefect's own template environment (the one its call-webhook
action renders with), from automations.yaml's notification: one JSON object whose idempotency_key is the run's id,
whatever the error message holds. The delivery itself is tested on a served Prefect (test_notifications.py)."""

from __future__ import annotations

import json
from uuid import uuid4

from orchestration.automations import AUTOMATIONS_FILE, read_automations
from tests.conftest import PROJECT_ROOT


def test_the_webhook_payload_is_json_with_the_runs_id_as_its_key_whatever_the_error_says():
    from prefect.server.utilities.user_templates import render_user_template_sync

    block_id = uuid4()
    (notifying,) = [automation for automation in read_automations(PROJECT_ROOT / AUTOMATIONS_FILE, block_id, True)
                    if any(action.type == "call-webhook" for action in automation.actions)]
    (action,) = notifying.actions
    run_id = uuid4()
    message = 'stage \'validate\' failed: DataValidationError: "train" holds 5 images;\n\texpected 60 <>&\\'
    context = {"flow_run": {"id": run_id, "name": "crimson-fox", "parameters": {"dataset": "mnist-sample"},
                            "state": {"name": "Failed", "message": message}},
               "deployment": {"name": "mnist-sample"}}

    payload = json.loads(render_user_template_sync(action.payload, context))

    assert action.block_document_id == block_id
    assert payload["idempotency_key"] == str(run_id)
    assert payload["subject"] == "training-pipeline Failed: deployment mnist-sample"
    assert f"Flow run: crimson-fox, Failed\nFlow run id: {run_id}\n" in payload["body"]
    assert payload["body"].endswith(f"Error: {message}")

