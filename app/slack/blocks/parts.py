"""Block Kit parts shared by the approval message, the `/approvals` list and the Home tab.
Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from slack_sdk.models.blocks import ButtonElement, ConfirmObject, PlainTextObject

from app.config import QueueRules
from app.slack.blocks import templates
from app.slack.blocks.text import clip, escape, one_line
from app.slack.ids import ActionId


class Summarised(Protocol):
    """What a one-line summary needs of an approval, stored or listed by Rotor."""

    @property
    def id(self) -> str: ...
    @property
    def queue_name(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def created_at(self) -> datetime | None: ...


def people(users: list[str]) -> str:
    """Slack user ids as mentions, in order."""
    return ", ".join(f"<@{u}>" for u in users)


@dataclass(frozen=True)
class Quorum:
    """How many distinct approvers a job needs, and who has approved so far, in order."""

    required: int = 1
    voters: list[str] = field(default_factory=list)

    def progress(self) -> str:
        who = people(self.voters) or "nobody yet"
        return f"*{len(self.voters)} of {self.required} approvals:* {who}"


NO_VOTES = Quorum()  # one approval needed, none given


def summary_line(approval: Summarised, rules: QueueRules) -> str:
    """One escaped line: the queue's fields as `Label: value · …`, or else the masked payload."""
    if not rules.fields:
        return escape(one_line(approval.payload, paths=rules.mask))
    facts = templates.Facts.of(
        approval.payload, approval.job_id, approval.id, approval.queue_name, rules.mask
    )
    return escape(
        " · ".join(f"{templates.label(p)}: {clip(facts.value(p), 100)}" for p in rules.fields)
    )


def decision_buttons(approval_id: str, queue_name: str, required: int = 1) -> list[ButtonElement]:
    effect = (
        f"The job on {queue_name} runs once {required} people have approved it."
        if required > 1
        else f"The job on {queue_name} will run."
    )
    confirm = ConfirmObject(
        title="Approve this job?",
        text=PlainTextObject(text=clip(effect, 300)),
        confirm="Approve",
        deny="Cancel",
    )
    return [
        ButtonElement(
            text="Approve",
            action_id=ActionId.APPROVE.on(approval_id),
            value=approval_id,
            style="primary",
            confirm=confirm,
        ),
        ButtonElement(
            text="Reject",
            action_id=ActionId.REJECT.on(approval_id),
            value=approval_id,
            style="danger",
        ),
    ]
