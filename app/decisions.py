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
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, timedelta
from functools import partial

from app import errors, metrics
from app.config import Policy, QueueRules
from app.db import Store
from app.db.models import Approval, Status, utcnow
from app.intake import Intake, from_rotor
from app.payload import at_path, typed_matches
from app.retry import backoff
from app.rotor import RotorClient, RotorConflict, RotorError, RotorNotFound
from app.slack.approvers import ApproverCheck
from app.slack.requesters import Requesters

log = logging.getLogger(__name__)

CLAIM_HOLD = timedelta(seconds=60)  # longer than the Rotor client's timeout
EXPIRY = "expiry"  # who holds the claim while an approval is being expired


def duration_text(delta: timedelta) -> str:
    """A duration as the policy file writes it: 3d, 12h, 90m, 45s."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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


def verb_for(status: Status) -> str:
    return "approve" if status == Status.APPROVED else "reject"


class Decider:
    def __init__(
        self,
        store: Store,
        rotor: RotorClient,
        policy: Policy,
        approvers: ApproverCheck,
        requesters: Requesters,
        intake: Intake,
        wake_outbox: Callable[[], None],
    ) -> None:
        self.approvals, self.votes, self.rotor, self.policy = (
            store.approvals,
            store.votes,
            rotor,
            policy,
        )
        self.approvers, self.requesters = approvers, requesters
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
            if approval is None:  # recorded a moment ago: only a database reset loses it
                raise errors.ApprovalUnknown(approval_id)
        return approval

    def rules(self, approval: Approval) -> QueueRules:
        return self.policy.rules_of(approval.queue_name, approval.rules)

    async def may_decide(self, user: str, rules: QueueRules) -> bool:
        """Whether `user` may decide (and so see) approvals under `rules`."""
        return await self.approvers.allowed(user, rules.approvers, rules.channel)

    async def may_see(self, user: str, queue_name: str) -> bool:
        """Whether `user` may decide some approvals on `queue_name` (under it or one of its
        rules), and so see that it exists."""
        for rules in self.policy.each_rules_for(queue_name):
            if await self.may_decide(user, rules):
                return True
        return False

    async def vet(self, approval_id: str, user: str, verb: str) -> Approval:
        """The approval, if `user` may `verb` it now; else raises why not."""
        approval = await self.load(approval_id)
        rules = self.rules(approval)
        if not await self.may_decide(user, rules):
            metrics.DECISIONS.labels(outcome="forbidden").inc()
            log.info("refused: not an approver", extra={"approval_id": approval_id, "user": user})
            approvers = list(rules.approvers or ())
            raise errors.NotAnApprover(approval.queue_name, verb, approvers, rules.channel)
        if approval.status != Status.PENDING:
            raise errors.AlreadyDecided(approval)
        return approval

    async def decide(
        self,
        approval_id: str,
        user: str,
        status: Status,
        reason: str | None = None,
        typed: str | None = None,
    ) -> Approval:
        """Decide in Rotor and record it; raises `errors.DecisionRefused` when it did not.
        `typed` is what the approver typed where a step-up rule asks for a payload value.
        Returns the approval as it now stands: decided, or pending with this vote counted."""
        with self.in_flight.track():
            return await self._decide(approval_id, user, status, reason, typed)

    async def requester(self, approval: Approval) -> str | None:
        """Who asked for the job: resolved when it was posted, or now if it was not."""
        if approval.requester:
            return approval.requester
        return await self.requesters.resolve(approval.payload, self.rules(approval).requester)

    async def _decide(
        self, approval_id: str, user: str, status: Status, reason: str | None, typed: str | None
    ) -> Approval:
        extra = {"approval_id": approval_id, "user": user}
        verb = verb_for(status)
        approval = await self.vet(approval_id, user, verb)
        if (after := self._overdue(approval)) is not None:
            # Past its expiry, however recently: the sweep may not have come round yet.
            await self._expire_now(approval, after)
        voted = False
        if status == Status.APPROVED:
            if await self.requester(approval) == user:
                metrics.DECISIONS.labels(outcome="forbidden").inc()
                raise errors.OwnRequest()
            if (path := self.rules(approval).confirm) is not None:
                if typed is None:
                    raise errors.ConfirmationNeeded(path)
                if not typed_matches(typed, at_path(approval.payload, path)):
                    raise errors.ConfirmationWrong(path)
            required = self.rules(approval).required_approvals
            if required > 1:
                voters = await self.votes.cast(approval_id, user, required)
                if voters is None:  # voted before: waiting, unless the quorum is met undecided
                    voters = await self.votes.voters(approval_id)
                    if len(voters) < required:
                        raise errors.AlreadyVoted(required - len(voters))
                log.info("vote %d of %d", len(voters), required, extra=extra)
                if len(voters) < required:
                    self._wake()  # the message shows the progress
                    return approval
                voted = True
        if not await self.approvals.claim_decision(approval_id, user, CLAIM_HOLD):
            current = await self.approvals.get(approval_id) or approval
            if current.status != Status.PENDING:
                raise errors.AlreadyDecided(current)
            if voted:
                # A quorum is never left met with nothing deciding it: the vote is taken back,
                # and counts again once the decision under way has ended.
                await self.votes.withdraw(approval_id, user)
                self._wake()
            raise errors.ClaimHeld(current.claimed_by, current.claimed_by == EXPIRY)
        try:
            if status == Status.APPROVED:
                await self.rotor.approve(approval_id)
            else:
                await self.rotor.reject(approval_id, reason or "")
        except RotorConflict:
            await self._decided_elsewhere(approval, user)
        except RotorError as e:
            await self.approvals.release_claim(approval_id, user)
            if voted:
                await self.votes.withdraw(approval_id, user)  # so a click again counts again
            metrics.ROTOR_ERRORS.labels(kind=type(e).__name__).inc()
            metrics.DECISIONS.labels(outcome="rotor_error").inc()
            log.warning("decision failed at Rotor: %s", e, extra=extra)
            raise errors.RotorFailed(verb, str(e)) from None
        metrics.DECISIONS.labels(outcome=status).inc()
        log.info("decided: %s", status, extra=extra)
        return await self._record(approval, status, user, reason)

    async def _expire_now(self, approval: Approval, after: timedelta) -> None:
        """Expire it instead of deciding it; always raises why nothing else was decided."""
        try:
            expired = await self.expire(approval, after)
        except RotorError as e:
            raise errors.RotorFailed("expire it", str(e)) from None
        if expired:
            raise errors.Expired(duration_text(after))
        current = await self.approvals.get(approval.id)
        if current is not None and current.status != Status.PENDING:
            raise errors.AlreadyDecided(current)
        holder = current.claimed_by if current else None
        raise errors.ClaimHeld(holder, holder == EXPIRY)

    def _overdue(self, approval: Approval) -> timedelta | None:
        """The queue's expire_after if the approval has waited past it, else None."""
        after = self.rules(approval).expire_after
        expires = approval.expires_at
        if after is None or expires is None:
            return None
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # SQLite's
        return after if expires <= utcnow() else None

    async def _decided_elsewhere(self, approval: Approval, user: str) -> None:
        """Rotor answered 409: record its real state; always raises."""
        approval_id = approval.id
        try:
            real = await self.rotor.get_approval(approval_id)
        except RotorError as e:
            await self.approvals.release_claim(approval_id, user)
            raise errors.ConflictUnverified(str(e)) from None
        if real.status == Status.PENDING:
            await self.approvals.release_claim(approval_id, user)
            raise errors.StillPending()
        metrics.DECISIONS.labels(outcome="conflict").inc()
        await self._record(approval, Status(real.status), None, real.reason)
        raise errors.DecidedElsewhere(real.status)

    async def _record(
        self,
        approval: Approval,
        status: Status,
        user: str | None,
        reason: str | None,
        expired: bool = False,
    ) -> Approval:
        """Record what Rotor decided; if the database is down, keep trying in the background
        until it answers (Rotor has decided: the message must follow without waiting for sync).
        Returns the approval as recorded (as it was, if something recorded it first)."""
        record = partial(self.approvals.record_decision, approval.id, status, user, reason, expired)
        try:
            decided = await record()
        except errors.DatabaseUnavailable:
            task = asyncio.create_task(self._record_later(approval.id, record))
            self._recording.add(task)  # a strong reference until it is done
            task.add_done_callback(self._recording.discard)
            raise errors.RecordingDelayed(verb_for(status)) from None
        metrics.observe_decision(approval, "expired" if expired else status)
        self._wake()
        # None: recorded already (by a decision event, say): what is stored is the truth.
        return decided or await self.approvals.get(approval.id) or approval

    async def _record_later(self, approval_id: str, record: Callable[[], Awaitable]) -> None:
        extra = {"approval_id": approval_id}
        log.warning("decision taken in Rotor, recording it once the database answers", extra=extra)
        for attempt in itertools.count(1):
            await asyncio.sleep(backoff(attempt, base=0.5, cap=10.0))
            try:
                await record()
            except errors.DatabaseUnavailable:
                continue
            log.warning("decision recorded after the database came back", extra=extra)
            self._wake()
            return

    async def expire(self, approval: Approval, after: timedelta) -> bool:
        """Reject in Rotor an approval nobody decided within `after`; True when it did.

        The claim makes it once across replicas; a 409 records Rotor's real state instead.
        """
        if not await self.approvals.claim_decision(approval.id, EXPIRY, CLAIM_HOLD):
            return False
        reason = f"Expired: no decision within {duration_text(after)}"
        try:
            await self.rotor.reject(approval.id, reason)
        except RotorConflict:
            with contextlib.suppress(errors.DecisionRefused):
                await self._decided_elsewhere(approval, EXPIRY)
            return False
        except RotorError:
            await self.approvals.release_claim(approval.id, EXPIRY)
            raise  # the next sweep tries again
        log.info("expired", extra={"approval_id": approval.id})
        with contextlib.suppress(errors.RecordingDelayed):
            await self._record(approval, Status.REJECTED, None, reason, expired=True)
        return True
