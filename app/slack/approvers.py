"""Who may decide an approval: the queue's approvers (user ids and user-group ids), or, for a
queue with no approver list, the members of the queue's channel: never the whole workspace."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from app.slack.client import SlackClient, SlackError

CACHE_SECONDS = 60.0  # a group's or a channel's members, read again after this


class ApproverCheck:
    def __init__(self, slack: SlackClient) -> None:
        self._slack = slack
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def allowed(
        self, user: str, approvers: tuple[str, ...] | None, channel: str | None
    ) -> bool:
        """With no list, the members of `channel` may decide (no channel: nobody)."""
        if approvers is None:
            return channel is not None and user in await self._members(
                channel, self._slack.channel_members
            )
        if user in approvers:
            return True
        for group in (a for a in approvers if a.startswith("S")):
            if user in await self._members(group, self._slack.group_members):
                return True
        return False

    async def _members(
        self, key: str, read: Callable[[str], Awaitable[frozenset[str]]]
    ) -> frozenset[str]:
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            members = await read(key)
        except SlackError:
            return frozenset()  # what cannot be read grants nothing (and is not cached)
        self._cache[key] = (time.monotonic() + CACHE_SECONDS, members)
        return members
