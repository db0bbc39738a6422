"""Answering the person who acted: an ephemeral note on the response_url, or a modal."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)


async def tell(response_url: str | None, text: str) -> None:
    """An ephemeral note to the person who acted."""
    if response_url:
        await AsyncWebhookClient(response_url).send(
            text=text, response_type="ephemeral", replace_original=False
        )


async def open_modal(
    client: AsyncWebClient, trigger_id: str, response_url: str | None, view: View
) -> None:
    try:
        await client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as e:
        # Most often an expired trigger_id (3 s): the person can simply click again.
        log.warning("views.open failed: %s", e.response.get("error"))
        await tell(response_url, "Could not open the form; please click again.")
