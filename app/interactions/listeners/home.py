"""The Home tab: published when someone opens it."""

from __future__ import annotations

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from app.interactions.listeners import services
from app.slack.ids import USER_ID


async def opened(ack: AsyncAck, event: dict, context: AsyncBoltContext) -> None:
    await ack()
    user = event.get("user")
    if event.get("tab") != "home" or not isinstance(user, str) or not USER_ID.match(user):
        return  # the Messages tab, or not an event Slack would send
    await services(context).home.show(user)
