"""The loop every worker runs: one round, a pause, again; a heartbeat for /readyz."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


class Worker:
    """Subclasses set `name` and `period` and implement `round`; `pause` may wait smarter."""

    name = "worker"
    period = 1.0

    def __init__(self) -> None:
        self.heartbeat = time.monotonic()
        self.stopping = False

    async def run(self) -> None:
        while not self.stopping:
            self.heartbeat = time.monotonic()
            try:
                await self.round()
            except Exception as e:
                self.failed(e)
            await self.pause()

    async def round(self) -> None:
        raise NotImplementedError

    def failed(self, error: Exception) -> None:
        log.exception("%s: round failed", self.name, exc_info=error)

    async def pause(self) -> None:
        await asyncio.sleep(self.period)

    def stuck(self) -> bool:
        """Not round its loop for several periods."""
        return time.monotonic() - self.heartbeat > 3 * self.period + 30
