"""Slack over Socket Mode: the same bolt app, its requests arriving over a WebSocket the service
opens itself (no public URL). bolt's AsyncSocketModeHandler acks each envelope with what the
listener acked, and its client reconnects by itself when the socket drops; several replicas each
hold a connection and Slack hands every envelope to one of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

log = logging.getLogger(__name__)

# How often the client pings; a socket closed under it is replaced within about this long, one
# that stops answering within four times this (slack_sdk's rule). Slack closes with a close frame
# or a `disconnect` message most of the time, and then the client reconnects at once.
PING_SECONDS = 5.0


class SocketMode:
    """Started and stopped by the lifespan (its client needs the running event loop)."""

    def __init__(self, app: AsyncApp, app_token: str) -> None:
        self._app, self._token = app, app_token
        self._handler: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task | None = None

    def start(self) -> None:
        self._handler = AsyncSocketModeHandler(
            self._app, self._token, logger=log, ping_interval=PING_SECONDS
        )
        # In the background: the client retries until Slack answers, and start-up must not wait
        # for that (/readyz says whether the socket is up).
        self._connecting = asyncio.create_task(self._handler.connect_async(), name="socket")

    async def connected(self) -> bool:
        return self._handler is not None and await self._handler.client.is_connected()

    async def stop(self) -> None:
        """Envelopes not acked yet go to another connection: Slack delivers them again."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
        if self._handler is not None:
            with contextlib.suppress(Exception):
                await self._handler.close_async()
