"""Answering the person who acted: an ephemeral note on the response_url, or a modal."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from slack_sdk.models.views import View
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.slack.client import SlackClient, SlackError

log = logging.getLogger(__name__)

SLACK_HOOKS = "https://hooks.slack.com"
SLACK_API = "https://slack.com"


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" in parts.netloc or not parts.scheme or not parts.netloc:
        return None  # credentials in a URL are a classic way to point it elsewhere
    return f"{parts.scheme}://{parts.netloc}".lower()


class ResponseUrls:
    """Which response_urls we POST to: Slack's, or the stand-in's when SLACK_API_URL is one."""

    def __init__(self, slack_api_url: str) -> None:
        self.origins = {SLACK_HOOKS}
        api = _origin(slack_api_url)
        if api and api != SLACK_API:
            self.origins.add(api)

    def trusted(self, url: object) -> str | None:
        """`url` if it may be POSTed to, else None (and logged: a request tried to aim us)."""
        if not isinstance(url, str) or not url:
            return None
        if _origin(url) in self.origins and urlsplit(url).path.startswith("/"):
            return url
        log.warning("dropped a response_url outside Slack: %.80s", url)
        return None


async def tell(response_url: str | None, text: str) -> None:
    """An ephemeral note to the person who acted."""
    await answer(response_url, text=text, response_type="ephemeral", replace_original=False)


async def answer(response_url: str | None, **message) -> None:
    """Post to a response_url already checked by `ResponseUrls.trusted`; None: nowhere."""
    if response_url:
        await AsyncWebhookClient(response_url).send(**message)


MODAL_FAILED = "Could not open the form; please click again."


async def open_modal(
    slack: SlackClient, trigger_id: str, response_url: str | None, view: View
) -> bool:
    """Open `view`; False (the person told on `response_url`) when Slack refused."""
    try:
        await slack.open_view(trigger_id, view.to_dict())
    except SlackError as e:
        # Most often an expired trigger_id (3 s): the person can simply click again.
        log.warning("views.open failed: %s", e)
        await tell(response_url, MODAL_FAILED)
        return False
    return True
