"""The sync worker: keeps the store true to Rotor.

Approvals pending in Rotor that never arrived by webhook are recorded (and so posted); approvals
this service thinks pending that Rotor says are decided get their message updated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.models import Status
from app.intake import Intake, from_rotor
from app.rotor import RotorClient, RotorError, RotorNotFound
from app.workers.base import Worker

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 100


class Sync(Worker):
    name = "sync"

    def __init__(
        self,
        store: Store,
        rotor: RotorClient,
        intake: Intake,
        policy: Policy,
        wake_outbox: Callable[[], None],
    ) -> None:
        super().__init__()
        self.approvals, self.rotor, self.intake = store.approvals, rotor, intake
        self._wake = wake_outbox
        self.period = policy.sync.every.total_seconds()

    async def round(self) -> None:
        await self.sync_once()

    def failed(self, error: Exception) -> None:
        if isinstance(error, RotorError):
            metrics.ROTOR_ERRORS.labels(kind=type(error).__name__).inc()
            log.warning("sync: Rotor unavailable: %s", error)
        else:
            super().failed(error)

    async def sync_once(self) -> tuple[int, int]:
        """Returns (approvals recorded, approvals found decided elsewhere)."""
        pending_in_rotor = await self._rotor_pending()
        known = await self.approvals.known_ids(list(pending_in_rotor))
        recorded = 0
        for approval_id, approval in pending_in_rotor.items():
            if approval_id not in known and await self.intake.accept(from_rotor(approval)):
                log.info("sync: recorded a missed approval", extra={"approval_id": approval_id})
                recorded += 1
        decided = 0
        for row in await self.approvals.pending():
            if row.id in pending_in_rotor:
                continue
            try:
                real = await self.rotor.get_approval(row.id)
            except RotorNotFound:
                continue
            if real.status != Status.PENDING and await self.approvals.record_decision(
                row.id, real.status, None, real.reason
            ):
                log.info("sync: decided outside Slack", extra={"approval_id": row.id})
                decided += 1
        if decided:
            self._wake()
        return recorded, decided

    async def _rotor_pending(self) -> dict:
        approvals, cursor = {}, None
        for _ in range(MAX_PAGES):
            page = await self.rotor.list_approvals(
                status=Status.PENDING, limit=PAGE_SIZE, cursor=cursor
            )
            approvals.update((a.id, a) for a in page.approvals)
            cursor = page.next_cursor
            if not cursor:
                break
        return approvals
