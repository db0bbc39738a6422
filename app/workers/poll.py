"""The poll worker: how approvals arrive when Rotor cannot reach us (no webhooks, no inbound ports).

Every `[sync] poll` it reads Rotor's pending approvals newest first, a page at a time, until a
page holds one it knows: what came before that is new, and goes through the same intake (and so
the same outbox) as a webhook. Usually that is one small GET a pass. Anything a pass cannot see
(an approval listed out of order) the full reconcile (`[sync] every`) still finds.
"""

from __future__ import annotations

import logging

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.models import Status
from app.errors import DatabaseRefused
from app.intake import Intake, from_rotor
from app.rotor import DEFAULT_RETRY_AFTER, RotorApproval, RotorClient, RotorError
from app.workers.base import Worker

log = logging.getLogger(__name__)

PAGE_SIZE = 20  # most passes find nothing new: keep the usual answer small


class Poll(Worker):
    grace = 30.0 + DEFAULT_RETRY_AFTER  # a round may wait out Rotor's rate limit
    name = "poll"

    def __init__(self, store: Store, rotor: RotorClient, intake: Intake, policy: Policy) -> None:
        super().__init__()
        assert policy.sync.poll is not None
        self.approvals, self.rotor, self.intake = store.approvals, rotor, intake
        self.period = policy.sync.poll.total_seconds()
        self.rotor_down = False

    async def round(self) -> None:
        await self.poll_once()
        if self.rotor_down:
            self.rotor_down = False
            log.warning("poll: Rotor answers again")

    def failed(self, error: Exception) -> None:
        if not isinstance(error, RotorError):
            return super().failed(error)
        metrics.ROTOR_ERRORS.labels(kind=type(error).__name__).inc()
        if not self.rotor_down:  # once an outage: a poll every few seconds would flood the log
            self.rotor_down = True
            log.warning("poll: Rotor unavailable, polling on: %s", error)

    async def poll_once(self) -> int:
        """Record the approvals pending in Rotor that are newer than every known one."""
        recorded, cursor, seen = 0, None, set[str]()
        while True:
            page = await self.rotor.list_approvals(
                status=Status.PENDING, limit=PAGE_SIZE, cursor=cursor
            )
            fresh = [a for a in page.approvals if a.id not in seen]
            seen.update(a.id for a in fresh)
            known = await self.approvals.known_ids([a.id for a in fresh])
            for approval in fresh:
                if approval.id not in known and await self._record(approval):
                    recorded += 1
            cursor = page.next_cursor
            # Met a known one (the rest is older), the end, or a cursor going round in circles.
            if known or not cursor or not fresh:
                return recorded

    async def _record(self, approval: RotorApproval) -> bool:
        try:
            if not await self.intake.accept(from_rotor(approval)):
                return False
        except DatabaseRefused as e:  # one approval's value: the rest of the page goes on
            self.rotor.unreadable.report(approval.id, str(e))
            return False
        log.info("poll: recorded a new approval", extra={"approval_id": approval.id})
        return True
