"""Storage: approvals and the outbox of work bound for Slack (SQLModel on SQLite or PostgreSQL).

Every state change that Slack must show is written together with an outbox task in one
transaction, so nothing is lost between the database and Slack. Work is claimed with
conditional updates, so concurrent clicks, workers and replicas never do the same thing twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Index, and_, case, delete, event, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
# Outbox task kinds.
POST, UPDATE, REMIND, ESCALATE = "post", "update", "remind", "escalate"


def utcnow() -> datetime:
    return clock.now()


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"

    id: str = Field(primary_key=True, max_length=36)
    job_id: str
    queue_name: str = Field(index=True)
    payload: Any = Field(default=None, sa_column=Column(JSON))
    workspace_id: str | None = None
    created_at: datetime
    status: str = Field(default=PENDING, index=True)
    # The Slack message, once posted.
    channel: str | None = None
    ts: str | None = None
    # A click in progress holds the decision until claimed_until.
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    # decided_by is a Slack user id, or None when decided outside Slack.
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    reminders_sent: int = 0
    # Set while a reminder is due in future; cleared on decision. Indexed for the sweep.
    next_reminder_at: datetime | None = Field(default=None, index=True)


class OutboxTask(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_lane_id", "lane", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(foreign_key="approvals.id")
    kind: str
    # Tasks in one lane run one at a time, in id order (posts to one channel keep their order).
    lane: str
    created_at: datetime = Field(default_factory=utcnow)
    not_before: datetime = Field(default_factory=utcnow, index=True)
    attempts: int = 0
    locked_until: datetime | None = None
    last_error: str | None = None
    failed: bool = False


_APPROVALS, _OUTBOX = Approval.__table__, OutboxTask.__table__


class _Taken(Exception):
    pass


@dataclass(frozen=True)
class Nudge:
    """A reminder or escalation to queue for an approval due at `due_at`."""

    approval_id: str
    due_at: datetime
    kind: str
    lane: str
    next_at: datetime | None


@dataclass(frozen=True)
class Posted:
    """Where Slack put an approval's message, and when its first reminder is due."""

    approval_id: str
    channel: str
    ts: str
    first_reminder: datetime


class Store:
    def __init__(self, database_url: str) -> None:
        self.engine: AsyncEngine = _create_engine(database_url)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.session() as s:
            await s.exec(select(1))

    # --- approvals -------------------------------------------------------------------------

    async def record_approval(self, approval: Approval, channel: str) -> bool:
        """Store a new approval and its post task. False when the id is known already."""
        # Core statements with bound parameters: compiled once, cheap on the webhook path.
        row = {column.name: getattr(approval, column.name) for column in _APPROVALS.columns}
        task = {"approval_id": approval.id, "kind": POST, "lane": channel}
        try:
            async with self.session() as s:
                conn = await s.connection()
                await conn.execute(_APPROVALS.insert(), row)
                await conn.execute(_OUTBOX.insert(), task)
        except IntegrityError:
            return False
        return True

    async def get(self, approval_id: str) -> Approval | None:
        async with self.session() as s:
            return await s.get(Approval, approval_id)

    async def known_ids(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        async with self.session() as s:
            rows = await s.exec(select(Approval.id).where(Approval.id.in_(ids)))
            return set(rows.all())

    async def pending(self, limit: int = 1000) -> list[Approval]:
        async with self.session() as s:
            rows = await s.exec(select(Approval).where(Approval.status == PENDING).limit(limit))
            return list(rows.all())

    # --- decisions -------------------------------------------------------------------------

    async def claim_decision(self, approval_id: str, user: str, hold: timedelta) -> bool:
        """Take the right to decide, so concurrent clicks make one Rotor call."""
        now = utcnow()
        async with self.session() as s:
            result = await s.exec(
                update(Approval)
                .where(Approval.id == approval_id, Approval.status == PENDING)
                .where(or_(Approval.claimed_until.is_(None), Approval.claimed_until < now))
                .values(claimed_by=user, claimed_until=now + hold)
            )
            return result.rowcount == 1

    async def release_claim(self, approval_id: str, user: str) -> None:
        async with self.session() as s:
            await s.exec(
                update(Approval)
                .where(Approval.id == approval_id, Approval.claimed_by == user)
                .values(claimed_by=None, claimed_until=None)
            )

    async def record_decision(
        self,
        approval_id: str,
        status: str,
        decided_by: str | None,
        reason: str | None = None,
    ) -> bool:
        """Mark a pending approval decided and queue the message update. False if not pending."""
        async with self.session() as s:
            approval = await s.get(Approval, approval_id, with_for_update=True)
            if approval is None or approval.status != PENDING:
                return False
            approval.status = status
            approval.decided_by = decided_by
            approval.decided_at = utcnow()
            approval.reason = reason
            approval.claimed_by = approval.claimed_until = None
            approval.next_reminder_at = None
            lane = f"update:{approval.channel or ''}"
            s.add(OutboxTask(approval_id=approval_id, kind=UPDATE, lane=lane))
            return True

    # --- reminders -------------------------------------------------------------------------

    async def due_reminders(self, now: datetime, limit: int = 200) -> list[Approval]:
        async with self.session() as s:
            rows = await s.exec(
                select(Approval)
                .where(Approval.next_reminder_at <= now)
                .order_by(Approval.next_reminder_at)
                .limit(limit)
            )
            return list(rows.all())

    async def schedule_reminders(self, nudges: list[Nudge]) -> list[str]:
        """Queue reminders and escalations in one transaction; each moves its row's due time
        on, and only if the row is still due at the time read (so once per due time, whatever
        the number of replicas). Returns the approval ids queued."""
        queued = []
        async with self.session() as s:
            for nudge in nudges:
                result = await s.exec(
                    update(Approval)
                    .where(Approval.id == nudge.approval_id, Approval.status == PENDING)
                    .where(Approval.next_reminder_at == nudge.due_at)
                    .values(
                        next_reminder_at=nudge.next_at,
                        reminders_sent=Approval.reminders_sent + (1 if nudge.kind == REMIND else 0),
                    )
                )
                if result.rowcount == 1:
                    s.add(
                        OutboxTask(approval_id=nudge.approval_id, kind=nudge.kind, lane=nudge.lane)
                    )
                    queued.append(nudge.approval_id)
        return queued

    # --- outbox ----------------------------------------------------------------------------

    async def due_lanes(self, now: datetime) -> list[str]:
        async with self.session() as s:
            rows = await s.exec(
                select(OutboxTask.lane)
                .where(OutboxTask.failed.is_(False), OutboxTask.not_before <= now)
                .where(or_(OutboxTask.locked_until.is_(None), OutboxTask.locked_until < now))
                .distinct()
            )
            return list(rows.all())

    async def claim_run(
        self, lane: str, lease: timedelta, limit: int
    ) -> list[tuple[OutboxTask, Approval]]:
        """Up to `limit` tasks from the head of a lane, with their approvals, if due and free.

        Only the head run is taken, in id order, so a lane's tasks never overtake each other,
        whichever worker or replica holds them.
        """
        now = utcnow()
        try:
            async with self._sessions() as s, s.begin():
                heads = (
                    await s.exec(
                        select(OutboxTask)
                        .where(OutboxTask.lane == lane, OutboxTask.failed.is_(False))
                        .order_by(OutboxTask.id)
                        .limit(limit)
                    )
                ).all()
                run = []
                for task in heads:
                    if task.not_before > now or (task.locked_until or now) > now:
                        break
                    run.append(task)
                if not run:
                    return []
                ids = [task.id for task in run]
                result = await s.exec(
                    update(OutboxTask)
                    .where(OutboxTask.id.in_(ids))
                    .where(or_(OutboxTask.locked_until.is_(None), OutboxTask.locked_until < now))
                    .values(locked_until=now + lease, attempts=OutboxTask.attempts + 1)
                    # The loaded tasks are counted below, once (the ORM would count them too).
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != len(ids):
                    raise _Taken  # another worker got there first: take nothing
                wanted = {task.approval_id for task in run}
                approvals = (await s.exec(select(Approval).where(Approval.id.in_(wanted)))).all()
        except _Taken:
            return []
        by_id = {a.id: a for a in approvals}
        for task in run:
            task.attempts += 1
        return [(task, by_id[task.approval_id]) for task in run]

    async def release(self, task_ids: list[int]) -> None:
        """Hand back claimed tasks that were not tried (their attempt does not count)."""
        if task_ids:
            async with self.session() as s:
                await s.exec(
                    update(OutboxTask)
                    .where(OutboxTask.id.in_(task_ids))
                    .values(locked_until=None, attempts=OutboxTask.attempts - 1)
                )

    async def finish(self, task_id: int, posted: Posted | None = None) -> None:
        """Done with a task; a post's message is recorded in the same transaction."""
        async with self.session() as s:
            await s.exec(delete(OutboxTask).where(OutboxTask.id == task_id))
            if posted is None:
                return
            unscheduled = and_(Approval.status == PENDING, Approval.next_reminder_at.is_(None))
            await s.exec(
                update(Approval)
                .where(Approval.id == posted.approval_id)
                .values(
                    channel=posted.channel,
                    ts=posted.ts,
                    next_reminder_at=case(
                        (unscheduled, posted.first_reminder), else_=Approval.next_reminder_at
                    ),
                )
            )

    async def retry_later(self, task_id: int, not_before: datetime, error: str) -> None:
        async with self.session() as s:
            await s.exec(
                update(OutboxTask)
                .where(OutboxTask.id == task_id)
                .values(not_before=not_before, locked_until=None, last_error=error)
            )

    async def reroute(self, task_id: int, lane: str, error: str) -> None:
        async with self.session() as s:
            await s.exec(
                update(OutboxTask)
                .where(OutboxTask.id == task_id)
                .values(lane=lane, not_before=utcnow(), locked_until=None, last_error=error)
            )

    async def retry_failed(self, channel_for: Callable[[str], str]) -> int:
        """Put every failed task back in line (posts at their queue's channel); how many."""
        async with self.session() as s:
            failed = (await s.exec(select(OutboxTask).where(OutboxTask.failed.is_(True)))).all()
            for task in failed:
                task.failed, task.attempts, task.not_before = False, 0, utcnow()
                task.locked_until = None
                if task.kind == POST:
                    approval = await s.get(Approval, task.approval_id)
                    task.lane = channel_for(approval.queue_name)
            return len(failed)

    async def fail(self, task_id: int, error: str) -> None:
        async with self.session() as s:
            await s.exec(
                update(OutboxTask)
                .where(OutboxTask.id == task_id)
                .values(failed=True, locked_until=None, last_error=error)
            )

    async def outbox_stats(self) -> tuple[int, int, datetime | None]:
        """(tasks waiting, tasks failed, creation time of the oldest waiting task)."""
        async with self.session() as s:
            waiting, oldest = (
                await s.exec(
                    select(func.count(), func.min(OutboxTask.created_at)).where(
                        OutboxTask.failed.is_(False)
                    )
                )
            ).one()
            failed = (await s.exec(select(func.count()).where(OutboxTask.failed.is_(True)))).one()
            return waiting, failed, oldest


def _create_engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    # One connection: SQLite has one writer anyway, and waiting for the pool is an asyncio
    # wait, where waiting for the file lock is the busy handler sleeping in steps of up to 100 ms.
    engine = create_async_engine(
        url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60
    )

    # SQLite: WAL for concurrent readers, and BEGIN IMMEDIATE so a transaction that will write
    # waits for the lock instead of failing with "database is locked" when it upgrades.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Durable across a crash of the process; an OS crash may lose the last commits, which
        # the sync worker recovers from Rotor. Saves an fsync on every commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
