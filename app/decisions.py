"""Deciding an approval from Slack: permission, a claim in the database, then Rotor.

Concurrent clicks make one Rotor call (the claim); if Rotor fails, the claim is released and
nothing is recorded; if Rotor says the approval was decided elsewhere (409), its real state is
recorded and shown. Every refusal is an `app.errors.DecisionRefused`; nothing here renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

from app import errors, metrics
from app.config import Policy
from app.db import Store
from app.db.models import Approval, Status
from app.intake import Intake, from_rotor
from app.retry import backoff
from app.rotor import RotorClient, RotorConflict, RotorError, RotorNotFound
from app.slack.approvers import ApproverCheck

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


def verb_for(status: str) -> str:
    return "approve" if status == Status.APPROVED else "reject"


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
        self.approvals, self.rotor, self.policy, self.approvers = (
            store.approvals,
            rotor,
            policy,
            approvers,
        )
        self.intake, self._wake = intake, wake_outbox
        self.in_flight = InFlight()
        self._recording: set[asyncio.Task] = set()

    async def load(self, approval_id: str) -> Approval:
        """The stored approval; one listed by Rotor but never seen here is recorded first."""
        approval = await self.approvals.get(approval_id)
        if approval is None:
            try:
                found = await self.rotor.get_approval(approval_id)
            except RotorNotFound:
                raise errors.ApprovalUnknown(approval_id) from None
            except RotorError as e:
                metrics.ROTOR_ERRORS.labels(kind=type(e).__name__).inc()
                raise errors.RotorUnreachable(str(e)) from None
            await self.intake.accept(from_rotor(found))
            approval = await self.approvals.get(approval_id)
        return approval

    async def may_decide(self, user: str, queue_name: str) -> bool:
        """Whether `user` may decide (and so see) approvals on `queue_name`."""
        return await self.approvers.allowed(user, self.policy.approvers_for(queue_name))

    async def vet(self, approval_id: str, user: str, verb: str) -> Approval:
        """The approval, if `user` may `verb` it now; else raises why not."""
        approval = await self.load(approval_id)
        if not await self.may_decide(user, approval.queue_name):
            metrics.DECISIONS.labels(outcome="forbidden").inc()
            log.info("refused: not an approver", extra={"approval_id": approval_id, "user": user})
            approvers = self.policy.approvers_for(approval.queue_name) or []
            raise errors.NotAnApprover(approval.queue_name, verb, approvers)
        if approval.status != Status.PENDING:
            raise errors.AlreadyDecided(approval)
        return approval

    async def decide(
        self, approval_id: str, user: str, status: str, reason: str | None = None
    ) -> None:
        """Decide in Rotor and record it; raises `errors.DecisionRefused` when it did not."""
        with self.in_flight.track():
            await self._decide(approval_id, user, status, reason)

    async def _decide(self, approval_id: str, user: str, status: str, reason: str | None) -> None:
        extra = {"approval_id": approval_id, "user": user}
        verb = verb_for(status)
        await self.vet(approval_id, user, verb)
        if not await self.approvals.claim_decision(approval_id, user, CLAIM_HOLD):
            current = await self.approvals.get(approval_id)
            if current.status != Status.PENDING:
                raise errors.AlreadyDecided(current)
            raise errors.ClaimHeld(current.claimed_by)
        try:
            if status == Status.APPROVED:
                await self.rotor.approve(approval_id)
            else:
                await self.rotor.reject(approval_id, reason or "")
        except RotorConflict:
            await self._decided_elsewhere(approval_id, user)
        except RotorError as e:
            await self.approvals.release_claim(approval_id, user)
            metrics.ROTOR_ERRORS.labels(kind=type(e).__name__).inc()
            metrics.DECISIONS.labels(outcome="rotor_error").inc()
            log.warning("decision failed at Rotor: %s", e, extra=extra)
            raise errors.RotorFailed(verb, str(e)) from None
        metrics.DECISIONS.labels(outcome=status).inc()
        log.info("decided: %s", status, extra=extra)
        await self._record(approval_id, status, user, reason)

    async def _decided_elsewhere(self, approval_id: str, user: str) -> None:
        """Rotor answered 409: record its real state; always raises."""
        try:
            real = await self.rotor.get_approval(approval_id)
        except RotorError as e:
            await self.approvals.release_claim(approval_id, user)
            raise errors.ConflictUnverified(str(e)) from None
        if real.status == Status.PENDING:
            await self.approvals.release_claim(approval_id, user)
            raise errors.StillPending()
        metrics.DECISIONS.labels(outcome="conflict").inc()
        await self._record(approval_id, real.status, None, real.reason)
        raise errors.DecidedElsewhere(real.status)

    async def _record(self, approval_id: str, status: str, user: str | None, reason) -> None:
        """Record what Rotor decided; if the database is down, keep trying in the background
        until it answers (Rotor has decided: the message must follow without waiting for sync)."""
        try:
            await self.approvals.record_decision(approval_id, status, user, reason)
        except errors.DatabaseUnavailable:
            task = asyncio.create_task(self._record_later(approval_id, status, user, reason))
            self._recording.add(task)  # a strong reference until it is done
            task.add_done_callback(self._recording.discard)
            raise errors.RecordingDelayed(verb_for(status)) from None
        self._wake()

    async def _record_later(self, approval_id: str, status: str, user, reason) -> None:
        extra = {"approval_id": approval_id}
        log.warning("decision taken in Rotor, recording it once the database answers", extra=extra)
        for attempt in itertools.count(1):
            await asyncio.sleep(backoff(attempt, base=0.5, cap=10.0))
            try:
                await self.approvals.record_decision(approval_id, status, user, reason)
            except errors.DatabaseUnavailable:
                continue
            log.warning("decision recorded after the database came back", extra=extra)
            self._wake()
            return
