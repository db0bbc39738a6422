"""Deciding an approval from Slack: permission, a claim in the database, then Rotor.

Concurrent clicks make one Rotor call (the claim); if Rotor fails, the claim is released and
nothing is recorded; if Rotor says the approval was decided elsewhere (409), its real state is
recorded and shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from app import metrics
from app.config import Policy
from app.intake import Intake, from_rotor
from app.rotor import RotorClient, RotorConflict, RotorError, RotorNotFound
from app.slack.approvers import ApproverCheck
from app.slack.blocks import escape, outcome_line
from app.store import APPROVED, PENDING, Approval, Store

log = logging.getLogger(__name__)

CLAIM_HOLD = timedelta(seconds=60)  # longer than the Rotor client's timeout


class InFlight:
    """Counts work under way, so shutdown can wait for it."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass(frozen=True)
class Outcome:
    decided: bool
    # What to tell the person who clicked (mrkdwn), or None when the message says it all.
    notice: str | None = None


class Decider:
    def __init__(
        self,
        store: Store,
        rotor: RotorClient,
        policy: Policy,
        approvers: ApproverCheck,
        intake: Intake,
        wake_outbox: Callable[[], None],
    ) -> None:
        self.store, self.rotor, self.policy, self.approvers = store, rotor, policy, approvers
        self.intake, self._wake = intake, wake_outbox
        self.in_flight = InFlight()

    async def load(self, approval_id: str) -> Approval:
        """The stored approval; one listed by Rotor but never seen here is recorded first."""
        approval = await self.store.get(approval_id)
        if approval is None:
            await self.intake.accept(from_rotor(await self.rotor.get_approval(approval_id)))
            approval = await self.store.get(approval_id)
        return approval

    async def vet(
        self, approval_id: str, user: str, verb: str
    ) -> tuple[Approval | None, str | None]:
        """The approval if `user` may `verb` it now, else what to tell them (mrkdwn)."""
        try:
            approval = await self.load(approval_id)
        except RotorNotFound:
            return None, f"Rotor does not know approval `{approval_id}`."
        except RotorError as e:
            metrics.ROTOR_ERRORS.labels(kind=type(e).__name__).inc()
            return None, f"Could not reach Rotor ({escape(str(e))}). Nothing changed."
        if not await self.approvers.allowed(user, self.policy.approvers_for(approval.queue_name)):
            metrics.DECISIONS.labels(outcome="forbidden").inc()
            log.info("refused: not an approver", extra={"approval_id": approval_id, "user": user})
            return None, (
                f"You are not an approver for *{escape(approval.queue_name)}*, "
                f"so you cannot {verb} this job."
            )
        if approval.status != PENDING:
            return None, f"Already decided: {outcome_line(approval)}"
        return approval, None

    async def decide(
        self, approval_id: str, user: str, status: str, reason: str | None = None
    ) -> Outcome:
        with self.in_flight.track():
            return await self._decide(approval_id, user, status, reason)

    async def _decide(
        self, approval_id: str, user: str, status: str, reason: str | None
    ) -> Outcome:
        extra = {"approval_id": approval_id, "user": user}
        verb = "approve" if status == APPROVED else "reject"
        _, refusal = await self.vet(approval_id, user, verb)
        if refusal:
            return Outcome(False, refusal)
        if not await self.store.claim_decision(approval_id, user, CLAIM_HOLD):
            current = await self.store.get(approval_id)
            if current.status != PENDING:
                return Outcome(False, f"Already decided: {outcome_line(current)}")
            return Outcome(False, f"<@{current.claimed_by}> is deciding this approval right now.")
        try:
            if status == APPROVED:
                await self.rotor.approve(approval_id)
            else:
                await self.rotor.reject(approval_id, reason or "")
        except RotorConflict:
            return await self._decided_elsewhere(approval_id, user)
        except RotorError as e:
            await self.store.release_claim(approval_id, user)
            metrics.ROTOR_ERRORS.labels(kind=type(e).__name__).inc()
            metrics.DECISIONS.labels(outcome="rotor_error").inc()
            log.warning("decision failed at Rotor: %s", e, extra=extra)
            return Outcome(
                False, f"Could not {verb}: {escape(str(e))}. Nothing was decided; try again."
            )
        await self.store.record_decision(approval_id, status, user, reason)
        self._wake()
        metrics.DECISIONS.labels(outcome=status).inc()
        log.info("decided: %s", status, extra=extra)
        return Outcome(True)

    async def _decided_elsewhere(self, approval_id: str, user: str) -> Outcome:
        try:
            real = await self.rotor.get_approval(approval_id)
        except RotorError as e:
            await self.store.release_claim(approval_id, user)
            return Outcome(False, f"Rotor says this approval is no longer pending ({e}).")
        if real.status == PENDING:
            await self.store.release_claim(approval_id, user)
            return Outcome(False, "Rotor refused the decision; the approval is still pending.")
        await self.store.record_decision(approval_id, real.status, None, real.reason)
        self._wake()
        metrics.DECISIONS.labels(outcome="conflict").inc()
        return Outcome(False, f"This approval was already *{real.status}* outside Slack.")
