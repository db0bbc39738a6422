"""Block Kit for approvals: pure functions from data to `slack_sdk.models`, no I/O.

Everything from a payload, a queue name or a job id is untrusted: it goes into `plain_text`
or rich-text preformatted elements, or is escaped before it lands in mrkdwn, so nothing in
it can ping, link or format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    RichTextBlock,
    RichTextElementParts,
    RichTextPreformattedElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from app.store import APPROVED, PENDING, REJECTED, Approval

PREVIEW_CHARS = 2500  # keeps a message well under Slack's ~13k characters of blocks
MODAL_CHUNK_CHARS = 2900
MODAL_MAX_CHARS = 150_000  # views.open refuses views over 250 KB
LIST_PAGE_SIZE = 15  # two blocks an item keeps a page under the 50-block limit
MASK = "••••••"
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|api[_-]?key|private[_-]?key|"
    r"credential|cookie|session|signature|bearer",
    re.IGNORECASE,
)

APPROVE, REJECT, VIEW_PAYLOAD, LIST_MORE = "approve", "reject", "view_payload", "list_more"
REJECT_CALLBACK, REASON_BLOCK, REASON_INPUT = "reject_reason", "reason", "reason_input"
REASON_MAX = 3000


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack must not auto-link channel names or URLs found in the text.
    return MarkdownTextObject(text=text, verbatim=True)


def action_id(action: str, approval_id: str) -> str:
    return f"{action}:{approval_id}"


def mask_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if _SECRET_KEY.search(str(k)) else mask_secrets(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def pretty_payload(payload: Any) -> str:
    return json.dumps(mask_secrets(payload), indent=2, ensure_ascii=False, default=str)


def preview(payload: Any, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    """Pretty, masked JSON cut to `limit` characters; the flag says whether it was cut."""
    text = pretty_payload(payload)
    if len(text) <= limit:
        return text, False
    return text[: limit - 1] + "…", True


def one_line(payload: Any, limit: int = 120) -> str:
    text = json.dumps(mask_secrets(payload), ensure_ascii=False, default=str)
    return clip(text, limit)


def slack_date(moment: datetime) -> str:
    """A date Slack shows in the reader's own time zone, with a UTC fallback."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    epoch = int(moment.timestamp())
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{fallback}>"


def age(since: datetime, now: datetime) -> str:
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return "just now"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


def _code_block(text: str, block_id: str) -> RichTextBlock:
    return RichTextBlock(
        block_id=block_id,
        elements=[RichTextPreformattedElement(elements=[RichTextElementParts.Text(text=text)])],
    )


# --- the approval message -----------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block]

    def blocks_json(self) -> list[dict]:
        return [b.to_dict() for b in self.blocks]


def outcome_line(approval: Approval) -> str:
    """`Approved by @user at <date>`, or `... outside Slack`, as mrkdwn."""
    verb = {APPROVED: "Approved", REJECTED: "Rejected"}[approval.status]
    icon = {APPROVED: ":white_check_mark:", REJECTED: ":x:"}[approval.status]
    who = f"by <@{approval.decided_by}>" if approval.decided_by else "outside Slack"
    when = f" on {slack_date(approval.decided_at)}" if approval.decided_at else ""
    line = f"{icon} *{verb}* {who}{when}"
    if approval.reason:
        line += "\n*Reason:* " + escape(clip(approval.reason, 2000))
    return line


_TITLES = {PENDING: "Approval needed", APPROVED: "Approved", REJECTED: "Rejected"}


def approval_message(approval: Approval, meant_for: str | None = None) -> Message:
    """The channel message for an approval, pending (with buttons) or decided.

    `meant_for` names the queue's own channel when the message had to go elsewhere.
    """
    queue, job = escape(clip(approval.queue_name, 200)), escape(clip(approval.job_id, 200))
    text, cut = preview(approval.payload)
    blocks: list[Block] = [
        HeaderBlock(
            block_id="title",
            text=PlainTextObject(
                text=clip(f"{_TITLES[approval.status]}: {approval.queue_name}", 150)
            ),
        ),
        SectionBlock(
            block_id="facts",
            fields=[
                mrkdwn(f"*Queue*\n{queue}"),
                mrkdwn(f"*Job*\n`{job}`"),
                mrkdwn(f"*Approval*\n`{approval.id}`"),
                mrkdwn(f"*Requested*\n{slack_date(approval.created_at)}"),
            ],
        ),
        _code_block(text, "preview"),
    ]
    if meant_for:
        note = f":warning: Posted here because the bot could not post in <#{meant_for}>."
        blocks.append(ContextBlock(block_id="misrouted", elements=[mrkdwn(note)]))
    buttons: list[ButtonElement] = []
    if cut:
        buttons.append(
            ButtonElement(
                text="View full payload",
                action_id=action_id(VIEW_PAYLOAD, approval.id),
                value=approval.id,
            )
        )
    if approval.status == PENDING:
        buttons[:0] = decision_buttons(approval.id, approval.queue_name)
        fallback = f"Approval needed: job {job} on queue {queue}"
    else:
        blocks.append(SectionBlock(block_id="outcome", text=mrkdwn(outcome_line(approval))))
        verb = "Approved" if approval.status == APPROVED else "Rejected"
        fallback = f"{verb}: job {job} on queue {queue}"
    if buttons:
        blocks.append(ActionsBlock(block_id="actions", elements=buttons))
    return Message(text=fallback, blocks=blocks)


def decision_buttons(approval_id: str, queue_name: str) -> list[ButtonElement]:
    confirm = ConfirmObject(
        title="Approve this job?",
        text=PlainTextObject(text=clip(f"The job on {queue_name} will run.", 300)),
        confirm="Approve",
        deny="Cancel",
    )
    return [
        ButtonElement(
            text="Approve",
            action_id=action_id(APPROVE, approval_id),
            value=approval_id,
            style="primary",
            confirm=confirm,
        ),
        ButtonElement(
            text="Reject",
            action_id=action_id(REJECT, approval_id),
            value=approval_id,
            style="danger",
        ),
    ]


# --- modals -------------------------------------------------------------------------------


def reject_modal(approval: Approval, private_metadata: str) -> View:
    return View(
        type="modal",
        callback_id=REJECT_CALLBACK,
        private_metadata=private_metadata,
        title="Reject approval",
        submit="Reject",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=mrkdwn(
                    f"Rejecting job `{escape(clip(approval.job_id, 200))}` on "
                    f"*{escape(clip(approval.queue_name, 200))}*. Rejection is final."
                )
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label="Reason",
                element=PlainTextInputElement(
                    action_id=REASON_INPUT,
                    multiline=True,
                    max_length=REASON_MAX,
                    placeholder="Why is this job rejected?",
                ),
            ),
        ],
    )


def payload_modal(approval: Approval) -> View:
    text = pretty_payload(approval.payload)
    shown = text[:MODAL_MAX_CHARS]
    chunks = [shown[i : i + MODAL_CHUNK_CHARS] for i in range(0, len(shown), MODAL_CHUNK_CHARS)]
    blocks: list[Block] = [
        SectionBlock(
            text=mrkdwn(
                f"Job `{escape(clip(approval.job_id, 200))}` on "
                f"*{escape(clip(approval.queue_name, 200))}*"
            )
        )
    ]
    blocks += [_code_block(chunk, f"payload-{i}") for i, chunk in enumerate(chunks or [""])]
    if len(text) > len(shown):
        more = len(text) - len(shown)
        note = f"{more:,} more characters are not shown; read the job in Rotor."
        blocks.append(ContextBlock(elements=[PlainTextObject(text=note)]))
    return View(type="modal", title="Payload", close="Close", blocks=blocks)


# --- reminders ----------------------------------------------------------------------------


def mention(slack_id: str) -> str:
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


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


# --- the /approvals list ------------------------------------------------------------------

HELP = (
    "*/approvals* lists Rotor approvals.\n"
    "• `/approvals` — pending approvals, newest first\n"
    "• `/approvals approved` or `/approvals rejected` — decided ones\n"
    "• `/approvals pending payments` — only the queue `payments`\n"
    "Pending ones have Approve / Reject buttons; *More* shows the next page."
)
STATUSES = (PENDING, APPROVED, REJECTED)


@dataclass(frozen=True)
class ListQuery:
    status: str = PENDING
    queue: str | None = None


def parse_list_command(text: str) -> ListQuery | None:
    """`[pending|approved|rejected] [queue]` in any order; None for help or bad input."""
    words = text.split()
    status = next((w.lower() for w in words if w.lower() in STATUSES), None)
    rest = [w for w in words if w.lower() not in STATUSES]
    if len(rest) > 1 or (rest and rest[0].lower() == "help"):
        return None
    return ListQuery(status=status or PENDING, queue=rest[0] if rest else None)


@dataclass(frozen=True)
class ListItem:
    id: str
    queue_name: str
    job_id: str
    status: str
    payload: Any
    created_at: datetime | None


def approvals_list(
    items: list[ListItem], query: ListQuery, next_cursor: str | None, now: datetime, page: int
) -> list[Block]:
    scope = f" in *{escape(clip(query.queue, 100))}*" if query.queue else ""
    title = f"*{query.status.capitalize()} approvals*{scope}"
    if not items:
        title += "\nNothing here."
    blocks: list[Block] = [SectionBlock(block_id=f"list-title-{page}", text=mrkdwn(title))]
    for item in items:
        when = f"{age(item.created_at, now)} ago" if item.created_at else "age unknown"
        line = (
            f"*{escape(clip(item.queue_name, 100))}* · `{item.id}` · {when}\n"
            f"{escape(one_line(item.payload))}"
        )
        blocks.append(SectionBlock(block_id=f"item-{item.id}", text=mrkdwn(line)))
        if item.status == PENDING:
            blocks.append(
                ActionsBlock(
                    block_id=f"decide-{item.id}",
                    elements=decision_buttons(item.id, item.queue_name),
                )
            )
    if next_cursor:
        value = json.dumps({"s": query.status, "q": query.queue, "c": next_cursor, "p": page + 1})
        blocks.append(DividerBlock(block_id=f"list-end-{page}"))
        blocks.append(
            ActionsBlock(
                block_id=f"list-more-{page}",
                elements=[ButtonElement(text="More", action_id=LIST_MORE, value=value)],
            )
        )
    return blocks
