"""slack-bolt listeners: button clicks, the reject modal and the `/approvals` command.

Every listener acks first (Slack waits 3 s) and does the slow work after; a modal is opened
right after the ack, while its `trigger_id` is fresh.
"""

from __future__ import annotations

import json
import logging
import re

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.decisions import Decider
from app.rotor import RotorClient, RotorError
from app.slack import blocks
from app.store import APPROVED, REJECTED, utcnow

log = logging.getLogger(__name__)


def _prefixed(action: str) -> re.Pattern:
    return re.compile(rf"^{action}:apv_[0-9a-f]{{32}}$")


async def tell(response_url: str | None, text: str) -> None:
    """An ephemeral note to the person who acted."""
    if response_url:
        await AsyncWebhookClient(response_url).send(
            text=text, response_type="ephemeral", replace_original=False
        )


async def open_modal(client: AsyncWebClient, body: dict, view) -> None:
    try:
        await client.views_open(trigger_id=body["trigger_id"], view=view)
    except SlackApiError as e:
        # Most often an expired trigger_id (3 s): the person can simply click again.
        log.warning("views.open failed: %s", e.response.get("error"))
        await tell(body.get("response_url"), "Could not open the form; please click again.")


def build_bolt_app(
    client: AsyncWebClient, signing_secret: str, decider: Decider, rotor: RotorClient
) -> AsyncApp:
    app = AsyncApp(client=client, signing_secret=signing_secret, process_before_response=False)

    @app.action(_prefixed(blocks.APPROVE))
    async def approve(ack, body, action):
        await ack()
        outcome = await decider.decide(action["value"], body["user"]["id"], APPROVED)
        notice = outcome.notice
        if outcome.decided and body.get("container", {}).get("is_ephemeral"):
            notice = f"Approved `{action['value']}`."  # the list itself does not change
        if notice:
            await tell(body.get("response_url"), notice)

    @app.action(_prefixed(blocks.REJECT))
    async def reject(ack, body, action, client: AsyncWebClient):
        await ack()
        approval_id = action["value"]
        approval, refusal = await decider.vet(approval_id, body["user"]["id"], "reject")
        if refusal:
            await tell(body.get("response_url"), refusal)
            return
        metadata = json.dumps({"id": approval_id, "response_url": body.get("response_url")})
        await open_modal(client, body, blocks.reject_modal(approval, metadata))

    @app.view(blocks.REJECT_CALLBACK)
    async def reject_submitted(ack, body, view):
        state = view["state"]["values"].get(blocks.REASON_BLOCK, {}).get(blocks.REASON_INPUT, {})
        reason = (state.get("value") or "").strip()
        if not reason:
            await ack(response_action="errors", errors={blocks.REASON_BLOCK: "Give a reason."})
            return
        if len(reason) > blocks.REASON_MAX:
            await ack(
                response_action="errors",
                errors={blocks.REASON_BLOCK: f"Keep it under {blocks.REASON_MAX} characters."},
            )
            return
        await ack()
        metadata = json.loads(view["private_metadata"])
        outcome = await decider.decide(metadata["id"], body["user"]["id"], REJECTED, reason)
        if outcome.notice:
            await tell(metadata.get("response_url"), outcome.notice)

    @app.action(_prefixed(blocks.VIEW_PAYLOAD))
    async def view_payload(ack, body, action, client: AsyncWebClient):
        await ack()
        approval = await decider.store.get(action["value"])
        if approval is None:
            await tell(body.get("response_url"), "This approval is not stored here.")
            return
        await open_modal(client, body, blocks.payload_modal(approval))

    @app.command("/approvals")
    async def approvals_command(ack, command, respond):
        query = blocks.parse_list_command(command.get("text") or "")
        if query is None:
            await ack(text=blocks.HELP)
            return
        await ack()
        await _send_list(respond, query, cursor=None, page=0, replace=False)

    @app.action(blocks.LIST_MORE)
    async def more(ack, action, respond):
        await ack()
        state = json.loads(action["value"])
        query = blocks.ListQuery(status=state["s"], queue=state["q"])
        await _send_list(respond, query, cursor=state["c"], page=state["p"], replace=True)

    async def _send_list(respond, query, cursor, page, replace) -> None:
        try:
            result = await rotor.list_approvals(
                status=query.status, queue=query.queue, limit=blocks.LIST_PAGE_SIZE, cursor=cursor
            )
        except RotorError as e:
            await respond(text=f"Could not list approvals: {e}", replace_original=False)
            return
        items = [
            blocks.ListItem(a.id, a.queue_name, a.job_id, a.status, a.payload, a.created_at)
            for a in result.approvals
        ]
        now = utcnow()
        listing = blocks.approvals_list(items, query, result.next_cursor, now, page)
        await respond(
            text=f"{query.status.capitalize()} approvals",
            blocks=[b.to_dict() for b in listing],
            response_type="ephemeral",
            replace_original=replace,
        )

    return app
