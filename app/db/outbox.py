"""The outbox table: tasks bound for Slack, claimed a lane's head run at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, or_, update
from sqlmodel import col, select

from app.config import QueueRules
from app.db.engine import Database
from app.db.models import Approval, OutboxTask, Status, TaskKind, utcnow
from app.db.payloads import approvals_query, parsed


class _Taken(Exception):
    pass


def lane(kind: TaskKind, where: str) -> str:
    """A task's lane (tasks in one lane run one at a time, in order). Posts, reminders and
    escalations share their channel's lane, so a channel keeps its order and its pace; updates
    get a lane of their own per channel, so a decision shows without waiting behind a burst of
    posts; a DM goes in its person's lane (its approval's while that is not known yet), an
    edit in its approval's."""
    return f"update:{where}" if kind == TaskKind.UPDATE else where


def task(kind: TaskKind, approval_id: str, where: str) -> OutboxTask:
    """A new task in its lane."""
    return OutboxTask(approval_id=approval_id, kind=kind, lane=lane(kind, where))


@dataclass(frozen=True)
class Posted:
    """Where Slack put an approval's message, and when its first reminder is due."""

    approval_id: str
    channel: str
    ts: str
    first_reminder: datetime
    requester: str | None = None


class OutboxTasks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def due_lanes(self, now: datetime) -> list[str]:
        async with self._db.session() as s:
            rows = await s.exec(
                select(col(OutboxTask.lane))
                .where(col(OutboxTask.failed).is_(False), col(OutboxTask.not_before) <= now)
                .where(
                    or_(col(OutboxTask.locked_until).is_(None), col(OutboxTask.locked_until) < now)
                )
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
            async with self._db.session() as s:
                heads = (
                    await s.exec(
                        select(OutboxTask)
                        .where(col(OutboxTask.lane) == lane, col(OutboxTask.failed).is_(False))
                        .order_by(col(OutboxTask.id))
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
                    .where(col(OutboxTask.id).in_(ids))
                    .where(
                        or_(
                            col(OutboxTask.locked_until).is_(None),
                            col(OutboxTask.locked_until) < now,
                        )
                    )
                    .values(locked_until=now + lease, attempts=col(OutboxTask.attempts) + 1)
                    # The loaded tasks are counted below, once (the ORM would count them too).
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != len(ids):
                    raise _Taken  # another worker got there first: take nothing
                wanted = {task.approval_id for task in run}
                rows = (await s.exec(approvals_query().where(col(Approval.id).in_(wanted)))).all()
        except _Taken:
            return []
        by_id = {a.id: a for a in await parsed(rows)}
        for task in run:
            task.attempts += 1
        return [(task, by_id[task.approval_id]) for task in run]

    async def renew(self, task_id: int, attempts: int, lease: timedelta) -> bool:
        """Extend a claim while it is still this claim (a takeover counts another attempt);
        False when it is someone else's now."""
        async with self._db.session() as s:
            result = await s.exec(
                update(OutboxTask)
                .where(col(OutboxTask.id) == task_id, col(OutboxTask.attempts) == attempts)
                .values(locked_until=utcnow() + lease)
            )
            return result.rowcount == 1

    async def release(self, task_ids: list[int]) -> None:
        """Hand back claimed tasks that were not tried (their attempt does not count)."""
        if task_ids:
            async with self._db.session() as s:
                await s.exec(
                    update(OutboxTask)
                    .where(col(OutboxTask.id).in_(task_ids))
                    .values(locked_until=None, attempts=col(OutboxTask.attempts) - 1)
                )

    async def finish(self, task_id: int, posted: Posted | None = None) -> None:
        """Done with a task; a post's message is recorded in the same transaction."""
        async with self._db.session() as s:
            await s.exec(delete(OutboxTask).where(col(OutboxTask.id) == task_id))
            if posted is None:
                return
            unscheduled = and_(
                col(Approval.status) == Status.PENDING, col(Approval.next_reminder_at).is_(None)
            )
            await s.exec(
                update(Approval)
                .where(col(Approval.id) == posted.approval_id)
                .values(
                    channel=posted.channel,
                    ts=posted.ts,
                    next_reminder_at=case(
                        (unscheduled, posted.first_reminder), else_=col(Approval.next_reminder_at)
                    ),
                    requester=func.coalesce(col(Approval.requester), posted.requester),
                )
            )

    async def retry_later(self, task_id: int, not_before: datetime, error: str) -> None:
        await self._set(task_id, not_before=not_before, locked_until=None, last_error=error)

    async def reroute(self, task_id: int, lane: str, error: str) -> None:
        await self._set(
            task_id, lane=lane, not_before=utcnow(), locked_until=None, last_error=error
        )

    async def fail(self, task_id: int, error: str) -> None:
        await self._set(task_id, failed=True, locked_until=None, last_error=error)

    async def _set(self, task_id: int, **values: object) -> None:
        async with self._db.session() as s:
            await s.exec(update(OutboxTask).where(col(OutboxTask.id) == task_id).values(**values))

    async def retry_failed(self, rules_for: Callable[[str], QueueRules]) -> int:
        """Put every failed task back in line (posts at their queue's channel); how many."""
        async with self._db.session() as s:
            failed = (
                await s.exec(select(OutboxTask).where(col(OutboxTask.failed).is_(True)))
            ).all()
            for task in failed:
                task.failed, task.attempts, task.not_before = False, 0, utcnow()
                task.locked_until = None
                if task.kind == TaskKind.POST:
                    approval = await s.get(Approval, task.approval_id)
                    channel = rules_for(approval.queue_name).channel if approval else None
                    if channel is not None:
                        task.lane = channel
            return len(failed)

    async def stats(self) -> tuple[int, int, datetime | None]:
        """(tasks waiting, tasks failed, creation time of the oldest waiting task)."""
        async with self._db.session() as s:
            waiting, oldest = (
                await s.exec(
                    select(func.count(), func.min(col(OutboxTask.created_at))).where(
                        col(OutboxTask.failed).is_(False)
                    )
                )
            ).one()
            failed = (
                await s.exec(select(func.count()).where(col(OutboxTask.failed).is_(True)))
            ).one()
            return waiting, failed, oldest
