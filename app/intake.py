"""How approvals enter the store: from a webhook, from the sync, or from a click on a listed one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

from app.config import Policy
from app.db import Store
from app.db.models import Approval, utcnow
from app.rotor import RotorApproval


def from_rotor(approval: RotorApproval) -> Approval:
    created = approval.created_at
    if created is not None:
        # Rotor's times carry their zone; one without is taken as UTC.
        created = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    return Approval(
        id=approval.id,
        job_id=approval.job_id,
        queue_name=approval.queue_name,
        payload=approval.payload,
        created_at=created or utcnow(),
    )


class Intake:
    def __init__(self, store: Store, policy: Policy, wake_outbox: Callable[[], None]) -> None:
        self._approvals, self._policy, self._wake = store.approvals, policy, wake_outbox

    async def accept(self, approval: Approval) -> bool:
        """Record a new approval with its post task; False when it is known already."""
        channel = self._policy.channel_for(approval.queue_name)
        if expire_after := self._policy.expire_after(approval.queue_name):
            approval.expires_at = approval.created_at + expire_after
        if not await self._approvals.record(approval, channel):
            return False
        self._wake()
        return True
