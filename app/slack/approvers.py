"""Who may decide an approval: the queue's approvers (user ids and user-group ids), or, for a
queue with no approver list, the members of the queue's channel: never the whole workspace."""

from __future__ import annotations

import time

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

CACHE_SECONDS = 60.0  # a group's or a channel's members, read again after this
MEMBER_PAGES = 50  # conversations.members pages of 1,000 read at most (a 50,000-member channel)
_FAILURES = (SlackApiError, aiohttp.ClientError, TimeoutError)


class ApproverCheck:
    def __init__(self, slack: AsyncWebClient) -> None:
        self._slack = slack
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def allowed(self, user: str, approvers: list[str] | None, channel: str | None) -> bool:
        """With no list, the members of `channel` may decide (no channel: nobody)."""
        if approvers is None:
            return channel is not None and user in await self._members(channel, self._in_channel)
        if user in approvers:
            return True
        for group in (a for a in approvers if a.startswith("S")):
            if user in await self._members(group, self._in_group):
                return True
        return False

    async def _members(self, key: str, read) -> frozenset[str]:
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            members = await read(key)
        except _FAILURES:
            return frozenset()  # what cannot be read grants nothing (and is not cached)
        self._cache[key] = (time.monotonic() + CACHE_SECONDS, members)
        return members

    async def _in_group(self, group: str) -> frozenset[str]:
        response = await self._slack.usergroups_users_list(usergroup=group)
        return frozenset(response.get("users") or [])

    async def _in_channel(self, channel: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = None
        for _ in range(MEMBER_PAGES):
            response = await self._slack.conversations_members(
                channel=channel, limit=1000, cursor=cursor
            )
            members.update(response.get("members") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return frozenset(members)
