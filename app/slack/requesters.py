"""Who asked for a job: the payload names a Slack user id, or an email Slack knows."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from app.payload import at_path
from app.slack.client import SlackClient, SlackError
from app.slack.ids import USER_ID

log = logging.getLogger(__name__)

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
CACHE_SECONDS = 600.0


class Requesters:
    def __init__(self, slack: SlackClient) -> None:
        self._slack = slack
        self._emails: dict[str, tuple[float, str | None]] = {}  # email -> (until, user id)

    async def resolve(self, payload: Any, path: str | None) -> str | None:
        """The requester's Slack user id, or None when the payload does not say or Slack does
        not know them (nobody is blocked then)."""
        if path is None:
            return None
        value = at_path(payload, path)
        if not isinstance(value, str):
            return None
        value = value.strip()
        if USER_ID.fullmatch(value):
            return value
        if EMAIL.fullmatch(value):
            return await self._by_email(value.lower())
        return None

    async def _by_email(self, email: str) -> str | None:
        cached = self._emails.get(email)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            user = await self._slack.user_by_email(email)
        except SlackError:
            return None  # Slack's trouble, not an answer: asked again next time
        self._emails[email] = (time.monotonic() + CACHE_SECONDS, user)
        return user
