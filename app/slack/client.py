"""Calling Slack's Web API: what its errors mean for a retry, and each channel's pace.

The outbox, and anything else that posts (Home tab, approver checks), share these rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from app import metrics
from app.db.pace import ChannelPace

# Slack refused these calls, so they certainly did nothing; after any other failure
# (timeout, dropped connection, 5xx) the message may have been posted all the same.
RATELIMITED, REFUSED, AMBIGUOUS = "ratelimited", "refused", "ambiguous"
TRANSIENT_SLACK_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class Retry(Exception):
    """Try again after `delay` seconds, or after a backoff when None."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


class Permanent(Exception):
    """Slack refused for good (missing channel, bad blocks, revoked token…)."""


class Pacer:
    """At most `per_second` posts a channel, across every replica; a 429 pauses only that
    channel. The slots live in the database: one round-trip a post."""

    def __init__(self, per_second: float, slots: ChannelPace) -> None:
        self.interval = 1 / per_second
        self._slots = slots

    async def wait(self, channel: str) -> None:
        wait = await self._slots.claim(channel, self.interval)
        if wait > 0:
            await asyncio.sleep(wait)

    async def pause(self, channel: str, seconds: float) -> None:
        await self._slots.push(channel, seconds)


async def call(
    method: Callable[..., Awaitable[Any]],
    /,
    *,
    pacer: Pacer | None = None,
    paced_channel: str | None = None,
    **kwargs: Any,
) -> Any:
    """Call a Web API method; failures become `Retry` or `Permanent`.

    `paced_channel` is set for chat.postMessage's per-channel pace.
    """
    if pacer is not None and paced_channel is not None:
        await pacer.wait(paced_channel)
    try:
        return await method(**kwargs)
    except SlackApiError as e:
        error = e.response.get("error") or f"http_{e.response.status_code}"
        metrics.SLACK_ERRORS.labels(error=error).inc()
        if e.response.status_code == 429 or error == "ratelimited":
            delay = float(e.response.headers.get("Retry-After", 1))
            if pacer is not None and paced_channel is not None:
                await pacer.pause(paced_channel, delay)
            raise Retry(RATELIMITED, delay) from None
        if e.response.status_code >= 500:
            raise Retry(f"{AMBIGUOUS}: {error}") from None
        if error in TRANSIENT_SLACK_ERRORS:
            raise Retry(f"{REFUSED}: {error}") from None
        raise Permanent(f"{REFUSED}: {error}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        metrics.SLACK_ERRORS.labels(error="unreachable").inc()
        raise Retry(f"{AMBIGUOUS}: {type(e).__name__}") from None
