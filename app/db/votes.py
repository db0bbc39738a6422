"""The votes table: who approved a job whose queue needs several approvers, and when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from app.db.engine import Database
from app.db.models import Approval, Status, TaskKind, Vote
from app.db.outbox import task


class Votes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def cast(self, approval_id: str, user: str, required: int) -> list[str] | None:
        """Record `user`'s approval; the voters after it, in order, or None if they had voted.

        Below the quorum the message is queued for an update in the same transaction, so the
        progress shows; the vote that completes it leaves the update to the decision. Votes on
        one approval are cast one at a time (its row is locked), so of two final votes at once
        exactly one sees the quorum met: each counts the other's vote if it came first.
        """
        try:
            async with self._db.session() as s:
                approval = await s.get(Approval, approval_id, with_for_update=True)
                s.add(Vote(approval_id=approval_id, user=user))
                await s.flush()
                voters = await self._voters(s, approval_id)
                below = len(voters) < required
                if below and approval is not None and approval.status == Status.PENDING:
                    s.add(task(TaskKind.UPDATE, approval_id, approval.channel or ""))
                return voters
        except IntegrityError:
            return None

    async def withdraw(self, approval_id: str, user: str) -> None:
        """Take back a vote whose decision could not be made (Rotor failed)."""
        async with self._db.session() as s:
            await s.exec(
                delete(Vote).where(col(Vote.approval_id) == approval_id, col(Vote.user) == user)
            )

    async def voters(self, approval_id: str) -> list[str]:
        async with self._db.session() as s:
            return await self._voters(s, approval_id)

    async def of(self, approval_ids: list[str]) -> dict[str, list[tuple[str, datetime]]]:
        """Each approval's votes as (user, time), in order."""
        found: dict[str, list[tuple[str, datetime]]] = {i: [] for i in approval_ids}
        async with self._db.session() as s:
            for start in range(0, len(approval_ids), 500):
                chunk = approval_ids[start : start + 500]
                rows = await s.exec(
                    select(Vote)
                    .where(col(Vote.approval_id).in_(chunk))
                    .order_by(col(Vote.voted_at))
                )
                for vote in rows.all():
                    found[vote.approval_id].append((vote.user, vote.voted_at))
        return found

    @staticmethod
    async def _voters(s, approval_id: str) -> list[str]:
        rows = await s.exec(
            select(col(Vote.user))
            .where(col(Vote.approval_id) == approval_id)
            .order_by(col(Vote.voted_at))
        )
        return list(rows.all())
