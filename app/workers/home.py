"""Keeps recently opened Home tabs current: woken when the outbox changed something in Slack,
and every `period` for what other replicas changed; a burst of changes is one refresh."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from app.slack.home import HomeTabs
from app.workers.base import Worker

GAP = 1.0  # a burst of changes within this is one refresh


class HomeRefresh(Worker):
    name = "home"
    period = 30.0

    def __init__(self, home: HomeTabs) -> None:
        super().__init__()
        self.home = home
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def round(self) -> None:
        self._wake.clear()
        await self.home.refresh()

    async def pause(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.period)
        await asyncio.sleep(GAP)
