"""The reminders worker: nudges stale approvals in their thread, then escalates once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.approvals import Nudge
from app.db.models import Approval, TaskKind, utcnow
from app.workers.base import Worker

log = logging.getLogger(__name__)

PAGE = 500


class Reminders(Worker):
    name = "reminders"

    def __init__(self, store: Store, policy: Policy, wake_outbox: Callable[[], None]) -> None:
        super().__init__()
        self.approvals, self.policy, self._wake = store.approvals, policy.reminders, wake_outbox
        self.period = self.policy.check_every.total_seconds()

    async def round(self) -> None:
        await self.sweep()

    async def sweep(self) -> int:
        """Queue every due reminder or escalation, a page at a time; returns how many."""
        now, queued = utcnow(), 0
        while due := await self.approvals.due_reminders(now, PAGE):
            done = await self.approvals.schedule_reminders([self._nudge(a, now) for a in due])
            for approval_id in done:
                log.info("reminders: queued", extra={"approval_id": approval_id})
            metrics.MESSAGES.labels(kind="nudge_queued").inc(len(done))
            queued += len(done)
            if len(due) < PAGE or not done:
                break
        if queued:
            self._wake()
        return queued

    def _nudge(self, approval: Approval, now: datetime) -> Nudge:
        if approval.reminders_sent >= self.policy.escalate_after:
            # The last word: no more reminders after the escalation.
            lane = self.policy.escalation_channel or approval.channel
            return Nudge(approval.id, approval.next_reminder_at, TaskKind.ESCALATE, lane, None)
        return Nudge(
            approval.id,
            approval.next_reminder_at,
            TaskKind.REMIND,
            approval.channel,
            now + self.policy.every,
        )
