"""The approval message in its channel, its reminders and its escalation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)

from app.db.models import Approval, Status
from app.slack.blocks.text import (
    age,
    clip,
    code_block,
    escape,
    mention,
    mrkdwn,
    preview,
    slack_date,
)
from app.slack.ids import ActionId


@dataclass(frozen=True)
class Quorum:
    """How many distinct approvers a job needs, and who has approved so far, in order."""

    required: int = 1
    voters: list[str] = field(default_factory=list)

    def progress(self) -> str:
        who = ", ".join(f"<@{v}>" for v in self.voters) or "nobody yet"
        return f"*{len(self.voters)} of {self.required} approvals:* {who}"


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block]

    def blocks_json(self) -> list[dict]:
        return [b.to_dict() for b in self.blocks]


def outcome_line(approval: Approval, voters: list[str] | None = None) -> str:
    """`Approved by @user at <date>`, or `... outside Slack`, as mrkdwn; with a quorum, every
    approver (and, on a rejection, who had approved before)."""
    verb = {Status.APPROVED: "Approved", Status.REJECTED: "Rejected"}[approval.status]
    icon = {Status.APPROVED: ":white_check_mark:", Status.REJECTED: ":x:"}[approval.status]
    voters = voters or []
    if approval.expired:
        verb, icon, who = "Expired", ":hourglass:", "with no decision"
    elif approval.status == Status.APPROVED and voters:
        who = "by " + ", ".join(f"<@{v}>" for v in voters)
    elif approval.decided_by:
        who = f"by <@{approval.decided_by}>"
    else:
        who = "outside Slack"
    when = f" on {slack_date(approval.decided_at)}" if approval.decided_at else ""
    line = f"{icon} *{verb}* {who}{when}"
    if approval.reason:
        line += "\n*Reason:* " + escape(clip(approval.reason, 2000))
    if approval.status == Status.REJECTED and voters:
        line += "\n*Approved before:* " + ", ".join(f"<@{v}>" for v in voters)
    return line


_TITLES = {
    Status.PENDING: "Approval needed",
    Status.APPROVED: "Approved",
    Status.REJECTED: "Rejected",
}


def title_word(approval: Approval) -> str:
    return "Expired" if approval.expired else _TITLES[approval.status]


def approval_message(
    approval: Approval, meant_for: str | None = None, quorum: Quorum = Quorum()
) -> Message:
    """The channel message for an approval, pending (with buttons) or decided.

    `meant_for` names the queue's own channel when the message had to go elsewhere.
    """
    queue, job = escape(clip(approval.queue_name, 200)), escape(clip(approval.job_id, 200))
    text, cut = preview(approval.payload)
    blocks: list[Block] = [
        HeaderBlock(
            block_id="title",
            text=PlainTextObject(text=clip(f"{title_word(approval)}: {approval.queue_name}", 150)),
        ),
        SectionBlock(
            block_id="facts",
            fields=[
                mrkdwn(f"*Queue*\n{queue}"),
                mrkdwn(f"*Job*\n`{job}`"),
                mrkdwn(f"*Approval*\n`{approval.id}`"),
                mrkdwn(f"*Requested*\n{slack_date(approval.created_at)}"),
                *(
                    [mrkdwn(f"*Requested by*\n<@{approval.requester}>")]
                    if approval.requester
                    else []
                ),
            ],
        ),
        code_block(text, "preview"),
    ]
    if quorum.required > 1 and approval.status == Status.PENDING:
        blocks.insert(2, SectionBlock(block_id="quorum", text=mrkdwn(quorum.progress())))
    if meant_for:
        note = f":warning: Posted here because the bot could not post in <#{meant_for}>."
        blocks.append(ContextBlock(block_id="misrouted", elements=[mrkdwn(note)]))
    buttons: list[ButtonElement] = []
    if cut:
        buttons.append(
            ButtonElement(
                text="View full payload",
                action_id=ActionId.VIEW_PAYLOAD.on(approval.id),
                value=approval.id,
            )
        )
    if approval.status == Status.PENDING:
        buttons[:0] = decision_buttons(approval.id, approval.queue_name, quorum.required)
        fallback = f"Approval needed: job {job} on queue {queue}"
    else:
        outcome = outcome_line(approval, quorum.voters)
        blocks.append(SectionBlock(block_id="outcome", text=mrkdwn(outcome)))
        fallback = f"{title_word(approval)}: job {job} on queue {queue}"
    if buttons:
        blocks.append(ActionsBlock(block_id="actions", elements=buttons))
    return Message(text=fallback, blocks=blocks)


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


def requester_text(approval: Approval, voters: list[str], permalink: str | None) -> str:
    """The DM that tells the requester how their approval ended."""
    job, queue = escape(clip(approval.job_id, 200)), escape(clip(approval.queue_name, 200))
    where = f" (<{permalink}|the approval>)" if permalink else ""
    return f"Your job `{job}` on *{queue}*{where}:\n{outcome_line(approval, voters)}"


def reminder_text(approval: Approval, approvers: list[str] | None, now: datetime) -> str:
    who = " ".join(mention(a) for a in approvers or []) or "Approvers"
    return f"{who}: this approval has been waiting {age(approval.created_at, now)}. Please decide."


def escalation_text(approval: Approval, permalink: str | None, now: datetime) -> str:
    where = f"<{permalink}|this approval>" if permalink else f"approval `{approval.id}`"
    return (
        f":rotating_light: Nobody has decided {where} on "
        f"*{escape(clip(approval.queue_name, 200))}* after {approval.reminders_sent} reminders "
        f"({age(approval.created_at, now)} waiting)."
    )
