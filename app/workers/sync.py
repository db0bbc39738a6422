"""The sync worker: keeps the store true to Rotor.

Approvals pending in Rotor that never arrived by webhook are recorded (and so posted); approvals
this service thinks pending that Rotor says are decided get their message updated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app import metrics
from app.config import Policy
from app.intake import Intake, from_rotor
from app.rotor import RotorClient, RotorError, RotorNotFound
from app.store import PENDING, Store

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 100


class Sync:
    def __init__(
        self,
        store: Store,
        rotor: RotorClient,
        intake: Intake,
        policy: Policy,
        wake_outbox: Callable[[], None],
    ) -> None:
        self.store, self.rotor, self.intake, self._wake = store, rotor, intake, wake_outbox
        self.period = policy.sync.every.total_seconds()
        self.heartbeat = time.monotonic()

    async def run(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            try:
                await self.sync_once()
            except RotorError as e:
                metrics.ROTOR_ERRORS.labels(kind=type(e).__name__).inc()
                log.warning("sync: Rotor unavailable: %s", e)
            except Exception:
                log.exception("sync: failed")
            await asyncio.sleep(self.period)

    async def sync_once(self) -> tuple[int, int]:
        """Returns (approvals recorded, approvals found decided elsewhere)."""
        pending_in_rotor = await self._rotor_pending()
        known = await self.store.known_ids(list(pending_in_rotor))
        recorded = 0
        for approval_id, approval in pending_in_rotor.items():
            if approval_id not in known and await self.intake.accept(from_rotor(approval)):
                log.info("sync: recorded a missed approval", extra={"approval_id": approval_id})
                recorded += 1
        decided = 0
        for row in await self.store.pending():
            if row.id in pending_in_rotor:
                continue
            try:
                real = await self.rotor.get_approval(row.id)
            except RotorNotFound:
                continue
            if real.status != PENDING and await self.store.record_decision(
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
            page = await self.rotor.list_approvals(status=PENDING, limit=PAGE_SIZE, cursor=cursor)
            approvals.update((a.id, a) for a in page.approvals)
            cursor = page.next_cursor
            if not cursor:
                break
        return approvals
