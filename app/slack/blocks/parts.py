"""Block Kit parts shared by the approval message, the `/approvals` list and the Home tab.
Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from slack_sdk.models.blocks import ButtonElement, ConfirmObject, PlainTextObject

from app.config import QueueRules
from app.slack.blocks import templates
from app.slack.blocks.text import clip, code, escape, mention, one_line, one_line_clean, slack_len
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


def chars(value: Any) -> int:
    """The characters of every string in blocks (as dicts), as Slack counts them against its
    limit on a message's blocks."""
    if isinstance(value, str):
        return slack_len(value)
    if isinstance(value, dict):
        return sum(chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(chars(v) for v in value)
    return 0


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


def facts_of(approval: Summarised, rules: QueueRules) -> templates.Facts:
    """What the templates of `rules` may show of `approval`: its masked payload, cut to the
    paths they name, and the reserved names."""
    return templates.Facts.of(
        approval.payload,
        approval.job_id,
        approval.id,
        approval.queue_name,
        rules.mask,
        templates.named(rules),
    )


def summary_line(approval: Summarised, rules: QueueRules) -> str:
    """One escaped line: the queue's fields as `Label: value · …`, or else the masked payload."""
    if not rules.fields:
        return escape(one_line(approval.payload, paths=rules.mask))
    facts = facts_of(approval, rules)
    return escape(
        " · ".join(f"{templates.label(p)}: {clip(facts.value(p), 100)}" for p in rules.fields)
    )


def rule_line(rules: QueueRules) -> str:
    """The rule that applied and what it asks, as mrkdwn: `large payment: 2 approvals from
    @cfo`, and why when its condition could not be checked."""
    needs = f"{rules.required_approvals} approval{'s' if rules.required_approvals > 1 else ''}"
    if rules.approvers:
        needs += " from " + " ".join(mention(a) for a in rules.approvers[:10])
    line = f":scales: *Rule:* {escape(clip(rules.rule or '', 80))}: {needs}"
    if rules.confirm:
        line += f", typing the {code(rules.confirm, 60)} to approve"
    if rules.unchecked:
        line += " _(applied because its condition could not be checked for this payload)_"
    return line


def decision_buttons(approval_id: str, rules: QueueRules) -> list[ButtonElement]:
    """Approve and Reject. With a step-up `confirm`, Approve opens a form to type the value
    instead of Slack's confirm dialog (the listener insists on the form either way)."""
    queue, required = one_line_clean(rules.queue, 60), rules.required_approvals
    effect = (
        f"The job on {queue} runs once {required} people have approved it."
        if required > 1
        else f"The job on {queue} will run."
    )
    confirm = ConfirmObject(
        title="Approve this job?",
        text=PlainTextObject(text=clip(effect, 300)),
        confirm="Approve",
        deny="Cancel",
    )
    return [
        ButtonElement(
            text="Approve…" if rules.confirm else "Approve",
            action_id=ActionId.APPROVE.on(approval_id),
            value=approval_id,
            style="primary",
            confirm=None if rules.confirm else confirm,
        ),
        ButtonElement(
            text="Reject",
            action_id=ActionId.REJECT.on(approval_id),
            value=approval_id,
            style="danger",
        ),
    ]
