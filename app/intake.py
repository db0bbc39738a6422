"""How approvals enter the store: from a webhook, the poll or the sync, from a click on a listed
one, and how decisions made outside Slack (Rotor's decision events, the sync) are recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.approvals import NewApproval
from app.db.models import Status, utcnow
from app.edits import edited_from
from app.errors import DatabaseUnavailable
from app.retry import backoff
from app.rotor import (
    RotorApproval,
    RotorClient,
    RotorError,
    RotorNotFound,
    RotorRateLimited,
    RotorUnreadable,
)

log = logging.getLogger(__name__)

SETTLE_TRIES = 6  # a decision event's reads of Rotor (about a minute) before the sync takes over
SETTLING_AT_ONCE = 4  # decision events read from Rotor at the same time


def from_rotor(approval: RotorApproval) -> NewApproval:
    """An approval as Rotor lists it; one decided there is recorded decided (no buttons)."""
    created = approval.created_at
    if created is not None:
        # Rotor's times carry their zone; one without is taken as UTC.
        created = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    decided = approval.status in (Status.APPROVED, Status.REJECTED)
    return NewApproval(
        id=approval.id,
        job_id=approval.job_id,
        queue_name=approval.queue_name,
        payload=approval.payload,
        created_at=created or utcnow(),
        status=Status(approval.status) if decided else Status.PENDING,
        reason=approval.reason if decided else None,
        decided_at=utcnow() if decided else None,
    )


class Intake:
    def __init__(self, store: Store, policy: Policy, wake_outbox: Callable[[], None]) -> None:
        self._approvals, self._policy, self._wake = store.approvals, policy, wake_outbox

    async def accept(self, approval: NewApproval) -> bool:
        """Record a new approval with its post task; False when it is known already."""
        # Resolved once and kept: a later policy file applies to later approvals only.
        rules = self._policy.resolve(approval.queue_name, approval.payload, approval.job_id)
        approval.rules = rules.model_dump(mode="json")
        if rules.expire_after and approval.status == Status.PENDING:
            approval.expires_at = approval.created_at + rules.expire_after
        if (original_id := edited_from(approval.job_id)) is not None:
            await self._link_edit(approval, original_id)
        assert rules.channel is not None, "serve requires slack.default_channel"
        if not await self._approvals.record(approval, rules.channel):
            return False
        self._wake()
        return True

    async def _link_edit(self, approval: NewApproval, original_id: str) -> None:
        """A corrected job (its id derived from an edited approval): its message says who
        edited what, and the editor counts as its requester, so they may not approve it."""
        original = await self._approvals.get(original_id)
        edit = (original.edit or {}) if original else {}
        if original is None or edit.get("job") != approval.job_id:
            return  # not ours: an id that merely looks like one
        approval.requester = edit["by"]
        approval.edit = {
            "from": original.id,
            "from_job": original.job_id,
            "by": edit["by"],
            "changes": edit.get("changes", []),
        }


class OutsideDecisions:
    """Decisions made outside Slack (CLI, SDK, REST, Rotor's timeout policy), read from Rotor:
    its status and reason are the truth, whatever an event said."""

    def __init__(
        self, store: Store, rotor: RotorClient, intake: Intake, wake_outbox: Callable[[], None]
    ) -> None:
        self._approvals, self._rotor, self._intake = store.approvals, rotor, intake
        self._wake = wake_outbox
        self._gate = asyncio.Semaphore(SETTLING_AT_ONCE)
        self._settling: dict[str, asyncio.Task] = {}

    async def settle(self, approval_id: str, known: RotorApproval | None = None) -> bool:
        """Record Rotor's decision of an approval (`known`: Rotor's answer already read); an
        approval never seen here is recorded as decided, its message without buttons. True when
        this recorded the decision; False while Rotor says pending, or when it was recorded."""
        real = known or await self._rotor.get_approval(approval_id)
        if real.status not in (Status.APPROVED, Status.REJECTED):
            return False
        status = Status(real.status)
        recorded = bool(
            await self._approvals.record_decision(approval_id, status, None, real.reason)
        )
        if not recorded:
            # Unknown here (its approval.pending was lost, or comes later): recorded decided;
            # or a pending webhook has just recorded it: decided now.
            recorded = await self._intake.accept(from_rotor(real)) or bool(
                await self._approvals.record_decision(approval_id, status, None, real.reason)
            )
        if recorded:
            log.info("decided outside Slack: %s", real.status, extra={"approval_id": approval_id})
            metrics.observe_decision(real, "outside")
            self._wake()
        return recorded

    def signal(self, approval_id: str) -> None:
        """Rotor says the approval was decided: settle it in the background (the webhook is
        answered at once); a redelivery while it is under way adds nothing."""
        if approval_id in self._settling:
            return
        task = asyncio.create_task(self._settle_soon(approval_id))
        self._settling[approval_id] = task
        task.add_done_callback(lambda _: self._settling.pop(approval_id, None))

    async def _settle_soon(self, approval_id: str) -> None:
        extra = {"approval_id": approval_id}
        for attempt in range(1, SETTLE_TRIES + 1):
            problem: Exception | None = None
            try:
                async with self._gate:
                    real = await self._rotor.get_approval(approval_id)
                    if real.status != Status.PENDING:
                        await self.settle(approval_id, real)
                        return
                    # Read before Rotor's own write showed: read again.
            except RotorNotFound:
                log.warning("decision event: Rotor does not know the approval", extra=extra)
                return
            except RotorUnreadable:
                return  # reported by the client; reading it again cannot help
            except RotorRateLimited as e:
                await asyncio.sleep(e.retry_after)
                continue
            except (RotorError, DatabaseUnavailable) as e:
                problem = e
            except Exception:
                log.exception("decision event failed; the sync will find it", extra=extra)
                return
            if attempt == SETTLE_TRIES:
                why = f"{problem}" if problem else "Rotor still says pending"
                log.warning("decision event: left to the sync: %s", why, extra=extra)
                return
            await asyncio.sleep(backoff(attempt, base=1.0, cap=30.0))

    async def close(self) -> None:
        """Stop what is under way (the sync finds what it did not finish)."""
        tasks = list(self._settling.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
