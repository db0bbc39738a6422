"""The reminders worker: nudges stale approvals in their thread, escalates once, and has
approvals that outlive their queue's `expire_after` rejected as expired."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.approvals import Nudge
from app.db.models import Approval, TaskKind, utcnow
from app.rotor import RotorError
from app.workers.base import Worker

log = logging.getLogger(__name__)

PAGE = 500


class Reminders(Worker):
    name = "reminders"

    def __init__(
        self,
        store: Store,
        policy: Policy,
        wake_outbox: Callable[[], None],
        expire: Callable[[Approval, timedelta], Awaitable[bool]] | None = None,
    ) -> None:
        super().__init__()
        self.approvals, self.policy, self._wake = store.approvals, policy.reminders, wake_outbox
        self._rules_of, self._expire = policy.rules_of, expire
        self.period = self.policy.check_every.total_seconds()

    async def round(self) -> None:
        await self.expire_due()
        await self.sweep()

    async def expire_due(self) -> int:
        """Reject in Rotor what waited past its queue's expire_after; returns how many."""
        if self._expire is None:
            return 0
        expired = 0
        for approval in await self.approvals.due_expiries(utcnow()):
            after = self._rules_of(approval.queue_name, approval.rules).expire_after
            if after is None:
                continue  # the policy no longer expires this queue
            try:
                expired += await self._expire(approval, after)
            except RotorError as e:
                log.warning("expiry: Rotor unavailable: %s", e, extra={"approval_id": approval.id})
                break  # the next sweep tries again
        return expired

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
        due, channel = approval.next_reminder_at, approval.channel
        assert due is not None and channel is not None  # both set when the message was posted
        if approval.reminders_sent >= self.policy.escalate_after:
            # The last word: no more reminders after the escalation.
            where = self.policy.escalation_channel or channel
            return Nudge(approval.id, due, TaskKind.ESCALATE, where, None)
        return Nudge(approval.id, due, TaskKind.REMIND, channel, now + self.policy.every)
