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
from datetime import datetime, timedelta
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
    """The notification block the environment asks for, or None (a Slack webhook wins over a plain one).

    A plain webhook gets Prefect's Webhook block, which the automation calls with a JSON payload of its own
    (`webhook_payload`): the subject, the body and the flow run's id as an idempotency key. Its headers are fixed
    when the block is saved, so the key cannot go in a header too."""
    from prefect.blocks.notifications import SlackWebhook
    from prefect.blocks.webhook import Webhook
    from prefect.types import SecretDict
    from pydantic import SecretStr

    if environment.get(SLACK_VARIABLE):
        return SlackWebhook(url=SecretStr(environment[SLACK_VARIABLE]))
    if environment.get(WEBHOOK_VARIABLE):
        # A team's own receiver often has a private address: the operator set it, as before this block.
        return Webhook(method="POST", url=SecretStr(environment[WEBHOOK_VARIABLE]),
                       headers=SecretDict({"Content-Type": "application/json"}), allow_private_urls=True)
    return None


def webhook_payload(subject: str, body: str) -> str:
    """The call-webhook payload for a send-notification action's subject and body (Prefect's Jinja templates): one
    JSON object with `idempotency_key` (the flow run's id: a receiver that sees a key twice has a duplicate),
    `subject` and `body`, each rendered and quoted as JSON."""
    return ('{"idempotency_key": "{{ flow_run.id }}", "subject": {% filter tojson %}' + subject.strip()
            + '{% endfilter %}, "body": {% filter tojson %}' + body.rstrip() + '{% endfilter %}}')


def read_automations(path: Path, block_id: UUID | None, webhook: bool = False) -> list:
    """automations.yaml as Prefect's AutomationCore objects, every send-notification action sent to `block_id`
    (with `webhook`, a Webhook block: each becomes a call-webhook action whose payload carries the idempotency key);
    without a block, those that send a notification are left out."""
    from prefect.events.schemas.automations import AutomationCore

    def sent_to_block(action: dict) -> dict:
        if action["type"] != "send-notification":
            return action
        if webhook:
            return {"type": "call-webhook", "block_document_id": str(block_id),
                    "payload": webhook_payload(action["subject"], action["body"])}
        return {**action, "block_document_id": str(block_id)}

    automations = []
    for spec in yaml.safe_load(Path(path).read_text(encoding="utf-8"))["automations"]:
        notifies = any(action["type"] == "send-notification" for action in spec["actions"])
        if notifies and block_id is None:
            continue
        automations.append(AutomationCore.model_validate(
            {**spec, "actions": [sent_to_block(action) for action in spec["actions"]]}))
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
            webhook = type(block).__name__ == "Webhook"
            for automation in read_automations(Path(root) / AUTOMATIONS_FILE, block_id, webhook):
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


def notifying_automations(root: Path) -> list[str]:
    """The names of automations.yaml's automations that send a notification."""
    specs = yaml.safe_load((Path(root) / AUTOMATIONS_FILE).read_text(encoding="utf-8"))["automations"]
    return [spec["name"] for spec in specs if any(action["type"] == "send-notification" for action in spec["actions"])]


def notification_problems(client, root: Path, since: datetime) -> list[str]:
    """One line for every flow run notified more than once since `since`, and for every notification the webhook
    refused (an answer other than 2xx: Prefect's call-webhook action records it and reports no failure). Read from
    the events Prefect records for each action it carried out (`prefect.automation.action.executed`, related to the
    event that triggered it: the run's Failed or Crashed). A receiver sees the same `idempotency_key` in each of a
    run's notifications."""
    from prefect.events.filters import (EventFilter, EventIDFilter, EventNameFilter, EventOccurredFilter,
                                        EventResourceFilter)
    from prefect.events.schemas.events import ResourceSpecification

    names = notifying_automations(root)
    if not names:
        return []
    sent = sorted(_all_events(client, EventFilter(
        occurred=EventOccurredFilter.model_validate({"since": since}),
        event=EventNameFilter(name=["prefect.automation.action.executed"]),
        resource=EventResourceFilter(labels=ResourceSpecification({"prefect.resource.name": names})))),
        key=lambda event: event.occurred)
    triggered_by = {event.id: UUID(resource.id.removeprefix("prefect.event.")) for event in sent
                    for resource in event.related if resource.role == "triggering-event"}
    if not triggered_by:
        return []
    earlier = EventOccurredFilter.model_validate({"since": since - timedelta(hours=1)})  # what triggered the first
    runs = {event.id: event.resource for event in _all_events(
        client, EventFilter(occurred=earlier, id=EventIDFilter(id=sorted(set(triggered_by.values())))))}
    notified: dict[str, list[str]] = {}
    refused = []
    for event in sent:
        run = runs.get(triggered_by.get(event.id))
        if run is None:
            continue
        label = f"{run.name} ({run.id.removeprefix('prefect.flow-run.')})"
        notified.setdefault(label, []).append(run.get("prefect.state-name", "?"))
        code = event.payload.get("status_code")
        if code is not None and not 200 <= int(code) < 300:
            refused.append(f"flow run {label}: the webhook answered {code} to its notification; not delivered")
    return [f"flow run {label}: notified {len(states)} times ({', '.join(states)})"
            for label, states in sorted(notified.items()) if len(states) > 1] + refused


def _all_events(client, event_filter) -> list:
    page = client.read_events(filter=event_filter, limit=50)  # the most the API gives a page
    events = list(page.events)
    while page.next_page:
        page = client.read_events_page(page.next_page)
        events += page.events
    return events
