"""Slack's Web API as this service uses it. `SlackClient` owns the `AsyncWebClient` and offers
what the service does; every failure is one of these:

    SlackError
     ├── SlackUnavailable    no answer, a dropped connection or a 5xx: the call may have been
     │                       done all the same (a post may be in the channel)
     ├── SlackRateLimited    429: try again after `delay` seconds
     └── SlackRefused        Slack answered with an error (`error`): the call did nothing;
                             `transient` for Slack's own trouble (internal_error…)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app import metrics

TRANSIENT_SLACK_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
MEMBER_PAGES = 50  # conversations.members pages of 1,000 read at most (a 50,000-member channel)
HISTORY_LIMIT = 200  # messages searched for one the service posted


class SlackError(Exception):
    """A Web API call failed; `str()` says how, without any of what was sent."""


class SlackUnavailable(SlackError):
    pass


class SlackRateLimited(SlackError):
    def __init__(self, delay: float) -> None:
        super().__init__(f"rate limited for {delay:g}s")
        self.delay = delay


class SlackRefused(SlackError):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error
        self.transient = error in TRANSIENT_SLACK_ERRORS


class SlackClient:
    def __init__(self, web: AsyncWebClient) -> None:
        self.web = web
        self._workspace_url: str | None = None

    async def _call(self, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        try:
            return await method(**kwargs)
        except SlackApiError as e:
            error = e.response.get("error") or f"http_{e.response.status_code}"
            metrics.SLACK_ERRORS.labels(error=error).inc()
            if e.response.status_code == 429 or error == "ratelimited":
                raise SlackRateLimited(float(e.response.headers.get("Retry-After", 1))) from None
            if e.response.status_code >= 500:
                raise SlackUnavailable(error) from None
            raise SlackRefused(error) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            metrics.SLACK_ERRORS.labels(error="unreachable").inc()
            raise SlackUnavailable(type(e).__name__) from None

    # --- messages ------------------------------------------------------------------------

    async def post(self, channel: str, text: str, **extra: Any) -> tuple[str, str]:
        """chat.postMessage (blocks, metadata, thread_ts in `extra`); where it landed:
        (channel id, ts). Links and media are never unfurled: a payload chose them."""
        response = await self._call(
            self.web.chat_postMessage,
            channel=channel,
            text=text,
            unfurl_links=False,
            unfurl_media=False,
            **extra,
        )
        return response["channel"], response["ts"]

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        await self._call(self.web.chat_update, channel=channel, ts=ts, text=text, blocks=blocks)

    async def permalink(self, channel: str, ts: str) -> str | None:
        found = await self._call(self.web.chat_getPermalink, channel=channel, message_ts=ts)
        return found.get("permalink")

    async def find_posted(self, channel: str, event_type: str, key: str, value: str) -> str | None:
        """The ts of a recent message in `channel` whose metadata says `event_type` with
        `key` = `value` (one the service posted), or None."""
        response = await self._call(
            self.web.conversations_history,
            channel=channel,
            include_all_metadata=True,
            limit=HISTORY_LIMIT,
        )
        for message in response.get("messages", []):
            meta = message.get("metadata") or {}
            if (
                meta.get("event_type") == event_type
                and (meta.get("event_payload") or {}).get(key) == value
            ):
                return message["ts"]
        return None

    # --- views ---------------------------------------------------------------------------

    async def publish_home(self, user: str, view: dict) -> None:
        await self._call(self.web.views_publish, user_id=user, view=view)

    async def open_view(self, trigger_id: str, view: dict) -> None:
        await self._call(self.web.views_open, trigger_id=trigger_id, view=view)

    # --- people --------------------------------------------------------------------------

    async def group_members(self, group: str) -> frozenset[str]:
        response = await self._call(self.web.usergroups_users_list, usergroup=group)
        return frozenset(response.get("users") or [])

    async def channel_members(self, channel: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = None
        for _ in range(MEMBER_PAGES):
            response = await self._call(
                self.web.conversations_members, channel=channel, limit=1000, cursor=cursor
            )
            members.update(response.get("members") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return frozenset(members)

    async def user_by_email(self, email: str) -> str | None:
        """The user id Slack has for `email`; None when Slack knows nobody by it."""
        try:
            response = await self._call(self.web.users_lookupByEmail, email=email)
        except SlackRefused as e:
            if e.error == "users_not_found":
                return None
            raise
        return (response.get("user") or {}).get("id")

    async def workspace_url(self) -> str | None:
        """The workspace's address (auth.test), asked once, for links to messages."""
        if self._workspace_url is None:
            self._workspace_url = (await self._call(self.web.auth_test)).get("url") or ""
        return self._workspace_url or None
