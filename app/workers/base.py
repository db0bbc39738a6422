"""The loop every worker runs: one round, a pause, again; a heartbeat for /readyz.

A database outage is logged once when it starts and once when it ends, however long it lasts;
the loop keeps going and resumes the work by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


class Worker:
    """Subclasses set `name` and `period` and implement `round`; `pause` may wait smarter."""

    name = "worker"
    period = 1.0
    grace = 30.0  # seconds past three periods before /readyz calls the worker stuck

    def __init__(self) -> None:
        self.heartbeat = time.monotonic()
        self.stopping = False
        self.database_down = False

    async def run(self) -> None:
        while not self.stopping:
            self.heartbeat = time.monotonic()
            try:
                await self.round()
            except DatabaseUnavailable as e:
                self.database_lost(e)
            except Exception as e:
                self.failed(e)
            else:
                self.database_answers()
            await self.pause()

    def database_lost(self, error: DatabaseUnavailable) -> None:
        if not self.database_down:
            self.database_down = True
            log.warning("%s: database unavailable, waiting for it: %s", self.name, error)

    def database_answers(self) -> None:
        if self.database_down:
            self.database_down = False
            log.warning("%s: database is back, resuming", self.name)

    async def round(self) -> None:
        raise NotImplementedError

    def failed(self, error: Exception) -> None:
        log.exception("%s: round failed", self.name, exc_info=error)

    async def pause(self) -> None:
        await asyncio.sleep(self.period)

    def stuck(self) -> bool:
        """Not round its loop for several periods."""
        return time.monotonic() - self.heartbeat > 3 * self.period + self.grace
