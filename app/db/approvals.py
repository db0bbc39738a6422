"""The approvals table: recording, decision claims, decisions and reminder scheduling.

Every change that Slack must show is written with its outbox task in one transaction, so
nothing is lost between the database and Slack. Claims are conditional updates, so concurrent
clicks, workers and replicas never do the same thing twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from app.db.engine import Database
from app.db.models import Approval, OutboxTask, Status, TaskKind, table_of, utcnow
from app.db.outbox import lane, task
from app.db.payloads import approvals_query, parsed
from app.errors import DatabaseUnavailable

_APPROVALS, _OUTBOX = table_of(Approval), table_of(OutboxTask)
# A new row's value of each column its record lacks (a NewApproval has only what arrives).
_ROW_DEFAULTS = {c.name: getattr(c.default, "arg", None) for c in _APPROVALS.columns}


@dataclass
class NewApproval:
    """An approval as it arrives (webhook, poll, sync, a click on a listed one): what its row
    is given. A plain record, as building a mapped `Approval` costs more than inserting it."""

    id: str
    job_id: str
    queue_name: str
    payload: Any
    created_at: datetime
    workspace_id: str | None = None
    status: Status = Status.PENDING
    reason: str | None = None
    decided_at: datetime | None = None
    rules: dict[str, Any] | None = None  # as resolved when it arrives (app.intake)
    expires_at: datetime | None = None
    requester: str | None = None  # known on arrival for a corrected job: its editor
    edit: dict[str, Any] | None = None  # a corrected job's origin (app.edits)


@dataclass
class _Arrival:
    row: dict[str, Any]
    post: dict[str, Any]
    new: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _insert_new(dialect: str) -> Insert:
    """INSERT of approval rows that skips known ids and returns the ids it stored."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_APPROVALS)
        .on_conflict_do_nothing(index_elements=[_APPROVALS.c.id])
        .returning(_APPROVALS.c.id)
    )


@dataclass(frozen=True)
class Nudge:
    """A reminder or escalation to queue for an approval due at `due_at`."""

    approval_id: str
    due_at: datetime
    kind: TaskKind
    channel: str  # where it is posted
    next_at: datetime | None


@dataclass(frozen=True)
class Waiting:
    """A pending approval posted in Slack, as the Home tab sorts and filters it (no payload)."""

    id: str
    queue_name: str
    created_at: datetime
    requester: str | None
    channel: str
    ts: str
    rules: dict[str, Any] | None = None  # as resolved when it arrived


class Approvals:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert = _insert_new(db.engine.dialect.name)
        self._arriving: list[_Arrival] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, approval: Approval | NewApproval, channel: str) -> bool:
        """Store a new approval and its post task. False when the id is known already.

        Approvals that arrive while a write is under way go together in the next transaction
        (a group commit): under load they share its round trips and its commit, where one
        transaction each cost more than all the rest of a webhook; alone, one is written at once.
        """
        row = {name: getattr(approval, name, default) for name, default in _ROW_DEFAULTS.items()}
        post = {"approval_id": approval.id, "kind": TaskKind.POST}
        arrival = _Arrival(row, post | {"lane": lane(TaskKind.POST, channel)})
        self._arriving.append(arrival)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_arriving())
        return await arrival.new

    async def _write_arriving(self) -> None:
        try:
            while self._arriving:
                group, self._arriving = self._arriving, []
                await self._write(group)
        except BaseException as e:  # cancelled at shutdown: nobody waits for ever
            for arrival in self._arriving:
                _fail(arrival, e)
            self._arriving = []
            raise
        finally:
            self._writer = None

    async def _write(self, group: list[_Arrival]) -> None:
        """One transaction for the group; on a refusal, each on its own, so that one bad value
        fails only its own approval."""
        first: dict[str, _Arrival] = {}
        for arrival in group:
            first.setdefault(arrival.row["id"], arrival)
        # The same id twice at once (a redelivery): the later one waits for the next round.
        self._arriving[:0] = [a for a in group if first[a.row["id"]] is not a]
        group = list(first.values())
        try:
            async with self._db.session() as s:
                conn = await s.connection()
                stored = set((await conn.execute(self._insert, [a.row for a in group])).scalars())
                posts = [a.post for a in group if a.row["id"] in stored]
                if posts:
                    await conn.execute(_OUTBOX.insert(), posts)
        except DatabaseUnavailable as e:
            for arrival in group:
                _fail(arrival, e)
        except Exception as e:
            if len(group) == 1:
                _fail(group[0], e)
            else:
                for arrival in group:
                    await self._write([arrival])
        else:
            for arrival in group:
                if not arrival.new.done():  # its request may have gone away
                    arrival.new.set_result(arrival.row["id"] in stored)

    async def get(self, approval_id: str) -> Approval | None:
        async with self._db.session() as s:
            return await s.get(Approval, approval_id)

    async def known_ids(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        async with self._db.session() as s:
            rows = await s.exec(select(col(Approval.id)).where(col(Approval.id).in_(ids)))
            return set(rows.all())

    async def pending_ids(self, after: str | None, limit: int) -> list[str]:
        """Ids of pending approvals after `after`, in id order: one page of a keyset scan."""
        query = select(col(Approval.id)).where(col(Approval.status) == Status.PENDING)
        if after is not None:
            query = query.where(col(Approval.id) > after)
        async with self._db.session() as s:
            rows = await s.exec(query.order_by(col(Approval.id)).limit(limit))
            return list(rows.all())

    async def waiting(self, limit: int) -> list[Waiting]:
        """Pending approvals posted in Slack, oldest first."""
        columns = [getattr(Approval, f) for f in Waiting.__dataclass_fields__]
        query = (
            select(*columns)
            .where(col(Approval.status) == Status.PENDING, col(Approval.ts).is_not(None))
            .order_by(col(Approval.created_at), col(Approval.id))
            .limit(limit)
        )
        async with self._db.session() as s:
            return [Waiting(*row) for row in (await s.exec(query)).all()]

    async def many(self, ids: list[str], payloads: bool = True) -> dict[str, Approval]:
        """The approvals with these ids, payloads parsed off the event loop; without
        `payloads`, not read at all (None)."""
        if not ids:
            return {}
        where = col(Approval.id).in_(ids)
        async with self._db.session() as s:
            if not payloads:
                query = select(Approval).options(defer(Approval.payload)).where(where)
                found = list((await s.exec(query)).all())
                for approval in found:
                    set_committed_value(approval, "payload", None)
                return {a.id: a for a in found}
            rows = (await s.exec(approvals_query().where(where))).all()
        return {a.id: a for a in await parsed(rows)}

    async def decided_since(self, since: datetime, queue: str | None = None) -> list[Approval]:
        """Decided approvals, oldest decision first (for the audit trail)."""
        query = select(Approval).where(
            col(Approval.status) != Status.PENDING, col(Approval.decided_at) >= since
        )
        if queue is not None:
            query = query.where(col(Approval.queue_name) == queue)
        async with self._db.session() as s:
            return list((await s.exec(query.order_by(col(Approval.decided_at)))).all())

    # --- decisions -------------------------------------------------------------------------

    async def claim_decision(self, approval_id: str, user: str, hold: timedelta) -> bool:
        """Take the right to decide, so concurrent clicks make one Rotor call."""
        now = utcnow()
        async with self._db.session() as s:
            result = await s.exec(
                update(Approval)
                .where(col(Approval.id) == approval_id, col(Approval.status) == Status.PENDING)
                .where(
                    or_(col(Approval.claimed_until).is_(None), col(Approval.claimed_until) < now)
                )
                .values(claimed_by=user, claimed_until=now + hold)
            )
            return result.rowcount == 1

    async def release_claim(self, approval_id: str, user: str) -> None:
        async with self._db.session() as s:
            await s.exec(
                update(Approval)
                .where(col(Approval.id) == approval_id, col(Approval.claimed_by) == user)
                .values(claimed_by=None, claimed_until=None)
            )

    async def record_decision(
        self,
        approval_id: str,
        status: Status,
        decided_by: str | None,
        reason: str | None = None,
        expired: bool = False,
        edit: dict[str, Any] | None = None,
    ) -> Approval | None:
        """Mark a pending approval decided and queue the message update (and the requester's
        DM); the decided approval, or None if it was not pending. `edit`: how its edit ended."""
        async with self._db.session() as s:
            approval = await s.get(Approval, approval_id, with_for_update=True)
            if approval is None or approval.status != Status.PENDING:
                return None
            approval.status = status
            approval.decided_by = decided_by
            approval.decided_at = utcnow()
            approval.reason = reason
            approval.expired = expired
            if edit is not None:
                approval.edit = edit
            approval.expires_at = None
            approval.claimed_by = approval.claimed_until = None
            approval.next_reminder_at = None
            s.add(task(TaskKind.UPDATE, approval_id, approval.channel or ""))
            if approval.requester is None and approval.ts is None:
                # Still being posted: the post finds who asked; the DM waits for it.
                s.add(task(TaskKind.NOTIFY, approval_id, approval_id))
            elif approval.requester and approval.requester != decided_by:  # told in a DM
                s.add(task(TaskKind.NOTIFY, approval_id, approval.requester))
            return approval

    async def start_edit(
        self, approval_id: str, user: str, edit: dict[str, Any], hold: timedelta
    ) -> bool:
        """Claim a pending approval for `user`'s edit (`hold`: no click decides it meanwhile),
        keep the correction and queue its task, in one transaction; False if it is decided,
        claimed, or being edited already."""
        now = utcnow()
        async with self._db.session() as s:
            result = await s.exec(
                update(Approval)
                .where(col(Approval.id) == approval_id, col(Approval.status) == Status.PENDING)
                .where(col(Approval.edit).is_(None))
                .where(
                    or_(col(Approval.claimed_until).is_(None), col(Approval.claimed_until) < now)
                )
                .values(claimed_by=user, claimed_until=now + hold, edit=edit)
            )
            if result.rowcount != 1:
                return False
            s.add(task(TaskKind.EDIT, approval_id, approval_id))
            return True

    async def end_edit(self, approval_id: str, edit: dict[str, Any]) -> None:
        """How the edit of an approval decided meanwhile ended, and its message updated."""
        async with self._db.session() as s:
            approval = await s.get(Approval, approval_id, with_for_update=True)
            if approval is not None:
                approval.edit = edit
                s.add(task(TaskKind.UPDATE, approval_id, approval.channel or ""))

    async def by_job(self, job_id: str) -> Approval | None:
        """The approval of a job, where its message is (its payload not read)."""
        async with self._db.session() as s:
            query = select(Approval).options(defer(Approval.payload))
            rows = await s.exec(query.where(col(Approval.job_id) == job_id).limit(1))
            return rows.first()

    # --- reminders and expiry --------------------------------------------------------------

    async def due_expiries(self, now: datetime, limit: int = 100) -> list[Approval]:
        async with self._db.session() as s:
            rows = await s.exec(
                select(Approval)
                .where(col(Approval.expires_at) <= now, col(Approval.status) == Status.PENDING)
                .order_by(col(Approval.expires_at))
                .limit(limit)
            )
            return list(rows.all())

    async def due_reminders(self, now: datetime, limit: int = 200) -> list[Approval]:
        async with self._db.session() as s:
            rows = await s.exec(
                select(Approval)
                .where(col(Approval.next_reminder_at) <= now)
                .order_by(col(Approval.next_reminder_at))
                .limit(limit)
            )
            return list(rows.all())

    async def schedule_reminders(self, nudges: list[Nudge]) -> list[str]:
        """Queue reminders and escalations in one transaction; each moves its row's due time
        on, and only if the row is still due at the time read (so once per due time, whatever
        the number of replicas). Returns the approval ids queued."""
        queued = []
        async with self._db.session() as s:
            for nudge in nudges:
                result = await s.exec(
                    update(Approval)
                    .where(
                        col(Approval.id) == nudge.approval_id,
                        col(Approval.status) == Status.PENDING,
                    )
                    .where(col(Approval.next_reminder_at) == nudge.due_at)
                    .values(
                        next_reminder_at=nudge.next_at,
                        reminders_sent=col(Approval.reminders_sent)
                        + (1 if nudge.kind == TaskKind.REMIND else 0),
                    )
                )
                if result.rowcount == 1:
                    s.add(task(nudge.kind, nudge.approval_id, nudge.channel))
                    queued.append(nudge.approval_id)
        return queued


def _fail(arrival: _Arrival, error: BaseException) -> None:
    if arrival.new.done():
        return
    if isinstance(error, asyncio.CancelledError):
        arrival.new.cancel()
    else:
        arrival.new.set_exception(error)
