"""Failure notifications: the project's Prefect automations (automations.yaml), sent through a notification block.

`make serve` calls `apply_automations`: it saves the notification block named NOTIFY_BLOCK from the environment
(a webhook URL in PIPELINE_NOTIFY_WEBHOOK_URL, or a Slack webhook in PIPELINE_NOTIFY_SLACK_URL), or uses a
notification block saved beforehand and named in PIPELINE_NOTIFY_BLOCK (`sendgrid-email/ops`), and creates each
automation of automations.yaml, or updates the one of that name in place, so that serving again changes nothing
(`prefect automation create` would make a duplicate). The URLs stay in the environment and the server's block
store: nothing is written to the repository or the logs. Without a notification target, only the automations
that send nothing are made (the one that crashes a run whose heartbeats stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import cast
from pathlib import Path
from uuid import UUID

import yaml

logger = logging.getLogger(__name__)

AUTOMATIONS_FILE = "automations.yaml"
NOTIFY_BLOCK = "pipeline-notifications"
WEBHOOK_VARIABLE = "PIPELINE_NOTIFY_WEBHOOK_URL"
SLACK_VARIABLE = "PIPELINE_NOTIFY_SLACK_URL"
BLOCK_VARIABLE = "PIPELINE_NOTIFY_BLOCK"


def notification_block(environment: Mapping[str, str]):
    """The notification block the environment asks for, or None (a Slack webhook wins over a plain one)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
    from pydantic import SecretStr

    if environment.get(SLACK_VARIABLE):
        return SlackWebhook(url=SecretStr(environment[SLACK_VARIABLE]))
    if environment.get(WEBHOOK_VARIABLE):
        return CustomWebhookNotificationBlock(name=NOTIFY_BLOCK, url=environment[WEBHOOK_VARIABLE],
                                              json_data={"subject": "{{subject}}", "body": "{{body}}"},
                                              headers=None, cookies=None)
    return None


def read_automations(path: Path, block_id: UUID | None) -> list:
    """automations.yaml as Prefect's AutomationCore objects, every send-notification action sent to `block_id`;
    without a block, those that send a notification are left out."""
    from prefect.events.schemas.automations import AutomationCore

    automations = []
    for spec in yaml.safe_load(Path(path).read_text(encoding="utf-8"))["automations"]:
        notifies = any(action["type"] == "send-notification" for action in spec["actions"])
        if notifies and block_id is None:
            continue
        actions = [{**action, "block_document_id": str(block_id)} if action["type"] == "send-notification"
                   else action for action in spec["actions"]]
        automations.append(AutomationCore.model_validate({**spec, "actions": actions}))
    return automations


def apply_automations(api_url: str, root: Path, environment: Mapping[str, str]) -> list[str]:
    """Save the notification block and create or update each automation by name; return their names."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect.blocks.core import Block

    block = notification_block(environment)
    notifying = block is not None or bool(environment.get(BLOCK_VARIABLE))
    if not notifying:
        logger.info("no failure notifications: set %s, %s or %s before `make serve` (docs/OPERATIONS.md)",
                    WEBHOOK_VARIABLE, SLACK_VARIABLE, BLOCK_VARIABLE)
    with temporary_settings({PREFECT_API_URL: api_url}):
        if not notifying:
            block_id = None
        elif block is None:  # one the user saved: an email block (SendgridEmail), Microsoft Teams, PagerDuty...
            block_id = cast(Block, Block.load(environment[BLOCK_VARIABLE]))._block_document_id
        else:
            block_id = block.save(NOTIFY_BLOCK, overwrite=True)
        names = []
        with get_client(sync_client=True) as client:
            for automation in read_automations(Path(root) / AUTOMATIONS_FILE, block_id):
                existing = client.read_automations_by_name(automation.name)
                if existing:
                    client.update_automation(existing[0].id, automation)
                    for duplicate in existing[1:]:  # made by hand with `prefect automation create`
                        client.delete_automation(duplicate.id)
                else:
                    client.create_automation(automation)
                names.append(automation.name)
    logger.info("automations: %s%s", ", ".join(names),
                f" (notifications through the {type(block).__name__} block)" if notifying else "")
    return names
