"""The sync worker: keeps the store true to Rotor.

Approvals pending in Rotor that never arrived by webhook are recorded (and so posted); approvals
this service thinks pending that Rotor says are decided get their message updated.

Both sides are read a page at a time (Rotor's list by its cursor, ours by id), so a pass reaches
every pending approval; between the two it keeps only the ids Rotor lists as pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.models import Status
from app.errors import DatabaseRefused, DatabaseUnavailable
from app.intake import Intake, OutsideDecisions, from_rotor
from app.rotor import (
    DEFAULT_RETRY_AFTER,
    RotorApproval,
    RotorClient,
    RotorError,
    RotorNotFound,
    RotorUnreadable,
)
from app.workers.base import Worker

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Rotor's largest page
LOCAL_PAGE_SIZE = 100
CHECKS_AT_ONCE = 8  # approvals asked of Rotor at the same time (each is one GET)


class Sync(Worker):
    grace = 30.0 + DEFAULT_RETRY_AFTER  # a round may wait out Rotor's rate limit
    name = "sync"

    def __init__(
        self,
        store: Store,
        rotor: RotorClient,
        intake: Intake,
        outside: OutsideDecisions,
        policy: Policy,
        wake_outbox: Callable[[], None],
    ) -> None:
        super().__init__()
        self.approvals, self.rotor, self.intake = store.approvals, rotor, intake
        self.outside, self._wake = outside, wake_outbox
        self.period = policy.sync.every.total_seconds()

    async def round(self) -> None:
        await self.sync_once()
        metrics.SYNC_PASSES.inc()

    def failed(self, error: Exception) -> None:
        if isinstance(error, RotorError):
            metrics.ROTOR_ERRORS.labels(kind=type(error).__name__).inc()
            log.warning("sync: Rotor unavailable: %s", error)
        else:
            super().failed(error)

    async def sync_once(self) -> tuple[int, int]:
        """Returns (approvals recorded, approvals found decided elsewhere)."""
        pending_in_rotor: set[str] = set()
        recorded = 0
        async for page in self._rotor_pending(pending_in_rotor):
            known = await self.approvals.known_ids([a.id for a in page])
            for approval in page:
                if approval.id not in known and await self._one(self._record, approval):
                    recorded += 1
        decided, after = 0, None
        while ids := await self.approvals.pending_ids(after, LOCAL_PAGE_SIZE):
            found = await self._check_all([i for i in ids if i not in pending_in_rotor])
            if found:
                decided += found
                self._wake()  # the updates go out while the scan goes on
            after = ids[-1]
        return recorded, decided

    async def _check_all(self, approval_ids: list[str]) -> int:
        """Ask Rotor about these approvals, a few at a time; how many were decided there."""
        gate = asyncio.Semaphore(CHECKS_AT_ONCE)

        async def check(approval_id: str) -> bool:
            async with gate:
                return await self._one(self._check_decided, approval_id)

        try:
            async with asyncio.TaskGroup() as group:
                checks = [group.create_task(check(i)) for i in approval_ids]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # Rotor or the database is down: end the pass
        return sum(c.result() for c in checks)

    async def _one(self, step, item) -> bool:
        """One approval's step; a failure is logged and the pass goes on with the rest."""
        approval_id = getattr(item, "id", item)
        try:
            return await step(item)
        except RotorUnreadable:
            return False  # this approval only (reported by the client)
        except DatabaseRefused as e:  # a value of this approval only
            self.rotor.unreadable.report(approval_id, str(e))
            return False
        except (RotorError, DatabaseUnavailable):
            raise  # everything else would fail the same way: end this pass
        except Exception as e:
            log.error(
                "sync: skipped: %s: %s", type(e).__name__, e, extra={"approval_id": approval_id}
            )
            return False

    async def _record(self, approval: RotorApproval) -> bool:
        if not await self.intake.accept(from_rotor(approval)):
            return False
        log.info("sync: recorded a missed approval", extra={"approval_id": approval.id})
        return True

    async def _check_decided(self, approval_id: str) -> bool:
        try:
            return await self.outside.settle(approval_id)
        except RotorNotFound:
            return False

    async def _rotor_pending(self, seen: set[str]) -> AsyncIterator[list[RotorApproval]]:
        """Rotor's pending approvals a page at a time; their ids are added to `seen`."""
        cursor = None
        while True:
            page = await self.rotor.list_approvals(
                status=Status.PENDING, limit=PAGE_SIZE, cursor=cursor
            )
            fresh = [a for a in page.approvals if a.id not in seen]
            seen.update(a.id for a in fresh)
            yield fresh
            cursor = page.next_cursor
            if not cursor or not fresh:
                return  # the end, or a cursor that goes round in circles
