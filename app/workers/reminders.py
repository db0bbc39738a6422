"""The reminders worker: nudges stale approvals in their thread, then escalates once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app import metrics
from app.config import Policy
from app.store import ESCALATE, REMIND, Store, utcnow

log = logging.getLogger(__name__)


class Reminders:
    def __init__(self, store: Store, policy: Policy, wake_outbox: Callable[[], None]) -> None:
        self.store, self.policy, self._wake = store, policy.reminders, wake_outbox
        self.heartbeat = time.monotonic()
        self.period = self.policy.check_every.total_seconds()

    async def run(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            try:
                await self.sweep()
            except Exception:
                log.exception("reminders: sweep failed")
            await asyncio.sleep(self.period)

    async def sweep(self) -> int:
        """Queue every due reminder or escalation; returns how many were queued."""
        now, queued = utcnow(), 0
        for approval in await self.store.due_reminders(now):
            if approval.reminders_sent >= self.policy.escalate_after:
                kind, next_at = ESCALATE, None  # the last word: no more reminders after it
                lane = self.policy.escalation_channel or approval.channel
            else:
                kind, next_at, lane = REMIND, now + self.policy.every, approval.channel
            if await self.store.schedule_reminder(approval, kind, lane, next_at):
                metrics.MESSAGES.labels(kind=f"{kind}_queued").inc()
                log.info("reminders: %s queued", kind, extra={"approval_id": approval.id})
                queued += 1
        if queued:
            self._wake()
        return queued
