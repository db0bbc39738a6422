"""The tables: approvals and the outbox of work bound for Slack. Statuses and kinds as StrEnums."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Dialect, Index, String, Table
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from app import clock


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class TaskKind(StrEnum):
    POST = "post"
    UPDATE = "update"
    REMIND = "remind"
    ESCALATE = "escalate"
    NOTIFY = "notify"  # a DM to the requester when the approval ends
    EDIT = "edit"  # enqueue an approver's corrected job in Rotor, then reject this one


class _EnumText(TypeDecorator[Any]):
    """An enum stored as its text (as the migrations made the column), read back as the enum."""

    impl = String
    cache_ok = True
    enum: type[StrEnum]

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


class _StatusText(_EnumText):
    cache_ok = True  # read from each class's own attributes
    enum = Status


class _KindText(_EnumText):
    cache_ok = True
    enum = TaskKind


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
    status: Status = Field(default=Status.PENDING, index=True, sa_type=_StatusText)
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
    # The Slack user who asked for the job, once resolved from the payload.
    requester: str | None = None
    # When a still pending approval is rejected as expired (indexed for the sweep); and whether
    # it ended that way.
    expires_at: datetime | None = Field(default=None, index=True)
    expired: bool = False
    # How it is handled (app.config.QueueRules, as JSON): resolved once, when it arrived.
    rules: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    # Edit before approve (app.edits): on the original, the correction and its new job; on the
    # corrected job's approval, where it came from.
    edit: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))


class Vote(SQLModel, table=True):
    """One person's approval of a job whose queue needs several (who, when)."""

    __tablename__ = "votes"

    approval_id: str = Field(foreign_key="approvals.id", primary_key=True)
    user: str = Field(primary_key=True)
    voted_at: datetime = Field(default_factory=utcnow)


class OutboxTask(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_lane_id", "lane", "id"),)

    id: int = Field(default=None, primary_key=True)  # the database numbers each task
    approval_id: str = Field(foreign_key="approvals.id")
    kind: TaskKind = Field(sa_type=_KindText)
    # Tasks in one lane run one at a time, in id order (posts to one channel keep their order).
    lane: str
    created_at: datetime = Field(default_factory=utcnow)
    not_before: datetime = Field(default_factory=utcnow, index=True)
    attempts: int = 0
    locked_until: datetime | None = None
    last_error: str | None = None
    failed: bool = False


class ChannelPace(SQLModel, table=True):
    """The next moment a post to a channel may go out, shared by every replica."""

    __tablename__ = "channel_pace"

    channel: str = Field(primary_key=True)
    # Seconds since the epoch on the database's clock, so replicas' clocks need not agree.
    next_at: float


class HomeTab(SQLModel, table=True):
    """Someone who opened the app's Home tab, and a digest of the view last published there
    (a view is published again only when it would show something else)."""

    __tablename__ = "home_tabs"

    user: str = Field(primary_key=True)
    opened_at: datetime = Field(index=True)
    published: str | None = None


class RotorBudgetRow(SQLModel, table=True):
    """The next moment a call to Rotor may go out, shared by every replica (app.db.budget)."""

    __tablename__ = "rotor_budget"

    name: str = Field(primary_key=True)
    # Seconds since the epoch on the database's clock, like channel_pace.
    next_at: float


def table_of(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements (type checkers do not see SQLModel's __table__)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]
