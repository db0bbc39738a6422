"""Each channel's pace is shared through the database: two replicas post as fast as one."""

from __future__ import annotations

import asyncio
import time

from slack_sdk.web.async_client import AsyncWebClient

from app import schema
from app.db import Store
from app.slack.client import SlackClient, SlackRateLimited
from app.workers.outbox import Pacer

# Slack allows SLACK_RATE posts a second on a channel (burst 3); the service is set below it,
# as in production, so only the two replicas' sum could exceed it.
SLACK_RATE, RATE, PER_REPLICA = 10, 8, 15


async def _post_from_two_replicas(database_url: str, slack) -> float:
    """Two stores on one database with a pacer each, as two replicas have: each posts
    PER_REPLICA messages to one channel at once; the seconds it took."""
    stores = [Store(database_url), Store(database_url)]
    await schema.upgrade(stores[0])
    web = AsyncWebClient(token=slack.token, base_url=f"{slack.base_url}/api/", retry_handlers=[])
    poster = SlackClient(web)

    async def replica(pacer: Pacer) -> None:
        for i in range(PER_REPLICA):
            while True:
                await pacer.wait("C0OPS")
                try:
                    await poster.post("C0OPS", f"post {i}")
                    break
                except SlackRateLimited as e:
                    await pacer.pause("C0OPS", e.delay)

    try:
        started = time.monotonic()
        await asyncio.gather(*(replica(Pacer(RATE, s.pace)) for s in stores))
        return time.monotonic() - started
    finally:
        for store in stores:
            await store.close()


def test_two_replicas_post_to_a_channel_at_the_pace_of_one(database_url, slack):
    # Each replica alone keeps to RATE: only a pace shared through the database keeps the
    # two of them (2 x RATE) under Slack's limit.
    slack.posts_per_second, slack.burst = SLACK_RATE, 3
    seconds = asyncio.run(_post_from_two_replicas(database_url, slack))
    posts = 2 * PER_REPLICA
    assert len(slack.channel_messages("C0OPS")) == posts
    assert slack.count("chat.postMessage") == posts  # not one answered 429
    assert seconds >= (posts - 1) / RATE * 0.95  # one slot after another, one interval apart


def test_a_429_pauses_the_channel_for_every_replica(database_url, slack):
    async def run() -> float:
        stores = [Store(database_url), Store(database_url)]
        await schema.upgrade(stores[0])
        try:
            first, second = (Pacer(RATE, s.pace) for s in stores)
            await first.pause("C0OPS", 1.5)  # Slack's Retry-After, seen by the first replica
            started = time.monotonic()
            await second.wait("C0OPS")
            return time.monotonic() - started
        finally:
            for store in stores:
                await store.close()

    assert asyncio.run(run()) >= 1.3
