"""Who may decide an approval: the queue's approvers, as user ids and user-group ids."""

from __future__ import annotations

import time

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

GROUP_CACHE_SECONDS = 60.0


class ApproverCheck:
    def __init__(self, slack: AsyncWebClient) -> None:
        self._slack = slack
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def allowed(self, user: str, approvers: list[str] | None) -> bool:
        """None means no list is configured: anyone who sees the message may decide."""
        if approvers is None:
            return True
        if user in approvers:
            return True
        for group in (a for a in approvers if a.startswith("S")):
            if user in await self._members(group):
                return True
        return False

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self._slack.usergroups_users_list(usergroup=group)
        except (SlackApiError, aiohttp.ClientError, TimeoutError):
            return frozenset()  # a group that cannot be read grants nothing (not cached)
        members = frozenset(response.get("users") or [])
        self._groups[group] = (time.monotonic() + GROUP_CACHE_SECONDS, members)
        return members
