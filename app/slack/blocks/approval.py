"""The approval message in its channel, its reminders and its escalation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)

from app.config import QueueRules
from app.db.models import Approval, Status
from app.slack.blocks import templates
from app.slack.blocks.edits import EditLinks, edit_blocks, edit_button
from app.slack.blocks.parts import (
    NO_VOTES,
    Quorum,
    chars,
    decision_buttons,
    facts_of,
    people,
    rule_line,
)
from app.slack.blocks.text import (
    PREVIEW_CHARS,
    age,
    clip,
    code,
    code_block,
    escape,
    inline,
    mention,
    mrkdwn,
    one_line_clean,
    preview,
    quoted,
    slack_date,
)
from app.slack.ids import ActionId

REASON_CHARS = 1500  # of a reason, as sent (escaped)
MESSAGE_CHARS = 12_000  # Slack refuses blocks holding about 13,000 (msg_blocks_too_long)
MIN_PREVIEW = 300

_URLISH = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://\S*|\b(?:www|ftp)\.\S*|\bmailto:\S*")


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
    if approval.expired:  # "Expired: no decision within 6h", said once
        why = (approval.reason or "no decision").removeprefix("Expired: ")
        verb, icon, who = "Expired", ":hourglass:", f"({inline(why, 200)})"
    elif approval.status == Status.APPROVED and voters:
        who = "by " + people(voters)
    elif approval.decided_by:
        who = f"by <@{approval.decided_by}>"
    else:
        who = "outside Slack"
    when = f" on {slack_date(approval.decided_at)}" if approval.decided_at else ""
    line = f"{icon} *{verb}* {who}{when}"
    if approval.reason and not approval.expired:  # an expiry's reason is in the line above
        # Quoted on lines of its own: no line of it can pass for an outcome line of ours.
        line += "\n*Reason:*\n" + quoted(approval.reason, REASON_CHARS)
    if approval.status == Status.REJECTED and voters:
        line += "\n*Approved before:* " + people(voters)
    return line


NO_LINKS = EditLinks()

_TITLES = {
    Status.PENDING: "Approval needed",
    Status.APPROVED: "Approved",
    Status.REJECTED: "Rejected",
}


def title_of(
    approval: Approval,
    rules: QueueRules,
    prefix: str = "",
    facts: templates.Facts | None = None,
) -> str:
    """The queue's title for this approval (plain text), or `<prefix>: <queue>`."""
    default = f"{prefix or 'Approval needed'}: {approval.queue_name}"
    template = rules.title
    if not template:
        return templates.title(None, None, default)
    text = templates.title(template, facts or facts_of(approval, rules), default)
    if template and prefix and prefix != _TITLES[Status.PENDING]:
        text = clip(f"{prefix}: {text}", 150)
    return text


def no_links(text: str) -> str:
    """For the fallback `text` (notifications): nothing that looks like a URL survives."""
    return _URLISH.sub("[link]", text)


def title_word(approval: Approval) -> str:
    return "Expired" if approval.expired else _TITLES[approval.status]


def approval_message(
    approval: Approval,
    rules: QueueRules,
    meant_for: str | None = None,
    quorum: Quorum = NO_VOTES,
    links: EditLinks = NO_LINKS,
    preview_chars: int = PREVIEW_CHARS,
) -> Message:
    """The channel message for an approval, pending (with buttons) or decided.

    `meant_for` names the queue's own channel when the message had to go elsewhere; `rules`
    say how it is shown (title, fields, link, mask); `links` join an edit's two messages. The
    preview is shortened when what else the message holds (hostile text, measured as sent)
    leaves it less room.
    """
    facts = facts_of(approval, rules) if rules.templated else None  # the masked payload
    if facts:
        text, cut = preview(facts.payload, preview_chars, masked=True)
    else:
        text, cut = preview(approval.payload, preview_chars, paths=rules.mask)
    header = title_of(approval, rules, title_word(approval), facts)
    blocks: list[Block] = [
        HeaderBlock(block_id="title", text=PlainTextObject(text=header)),
    ]
    if rules.fields and facts:
        blocks.append(
            SectionBlock(
                block_id="summary", fields=templates.field_objects(list(rules.fields), facts)
            )
        )
    blocks += [
        SectionBlock(
            block_id="facts",
            fields=[
                mrkdwn(f"*Queue*\n{code(approval.queue_name)}"),
                mrkdwn(f"*Job*\n{code(approval.job_id)}"),
                mrkdwn(f"*Approval*\n{code(approval.id)}"),
                mrkdwn(f"*Requested*\n{slack_date(approval.created_at)}"),
                *(
                    [mrkdwn(f"*Requested by*\n<@{approval.requester}>")]
                    if approval.requester
                    else []
                ),
            ],
        ),
    ]
    if rules.rule:
        blocks.append(ContextBlock(block_id="rule", elements=[mrkdwn(rule_line(rules))]))
    blocks += edit_blocks(approval, rules, links)
    if quorum.required > 1 and approval.status == Status.PENDING:
        blocks.append(SectionBlock(block_id="quorum", text=mrkdwn(quorum.progress())))
    blocks.append(code_block(text, "preview"))
    if meant_for:
        note = f":warning: Posted here because the bot could not post in <#{meant_for}>."
        blocks.append(ContextBlock(block_id="misrouted", elements=[mrkdwn(note)]))
    buttons: list[ButtonElement] = []
    if rules.link and facts and (url := templates.link(rules.link, facts)):
        buttons.append(
            ButtonElement(
                text="Open in Rotor", action_id=ActionId.OPEN_LINK.on(approval.id), url=url
            )
        )
    if cut:
        buttons.append(
            ButtonElement(
                text="View full payload",
                action_id=ActionId.VIEW_PAYLOAD.on(approval.id),
                value=approval.id,
            )
        )
    if approval.status == Status.PENDING:
        buttons[:0] = decision_buttons(approval.id, rules) + edit_button(approval, rules)
    else:
        outcome = outcome_line(approval, quorum.voters)
        blocks.append(SectionBlock(block_id="outcome", text=mrkdwn(outcome)))
    # Notifications show `text` as is: escaped, one line, no URL a payload could plant.
    job = one_line_clean(approval.job_id, 100)
    fallback = escape(no_links(f"{header} (job {job})"))
    if buttons:
        blocks.append(ActionsBlock(block_id="actions", elements=buttons))
    message = Message(text=fallback, blocks=blocks)
    over = chars(message.blocks_json()) - MESSAGE_CHARS
    if over > 0 and preview_chars > MIN_PREVIEW:  # room for the "View full payload" button too
        shorter = max(MIN_PREVIEW, preview_chars - over - 200)
        return approval_message(approval, rules, meant_for, quorum, links, shorter)
    return message


def requester_text(approval: Approval, voters: list[str], permalink: str | None) -> str:
    """The DM that tells the requester how their approval ended, in the service's own words:
    whoever enqueues a job chooses its payload, and so whom it DMs; no payload text goes along."""
    where = f" (<{permalink}|the approval>)" if permalink else ""
    job = f"job {code(approval.job_id)} on {code(approval.queue_name)}"
    return f"Your request, {job}{where}:\n" + outcome_line(approval, voters)


def still_to_vote(approvers: tuple[str, ...] | None, quorum: Quorum) -> list[str]:
    """Who may still approve: the approvers but those who have (a group cannot be split)."""
    return [a for a in approvers or [] if a not in quorum.voters]


def so_far(quorum: Quorum) -> str:
    """The progress of a quorum in words that ping nobody: ` 1 of 2 approvals so far.`"""
    if quorum.required < 2:
        return ""
    return f" {len(quorum.voters)} of {quorum.required} approvals so far."


def reminder_text(
    approval: Approval, rules: QueueRules, now: datetime, quorum: Quorum = NO_VOTES
) -> str:
    approvers = rules.approvers
    what = escape(no_links(title_of(approval, rules)))
    waiting = f"*{what}* has been waiting {age(approval.created_at, now)}"
    progress = so_far(quorum)
    if not approvers:
        yet = " who has not approved it" if quorum.voters else ""
        return f"{waiting}.{progress} Anyone in this channel{yet} can decide it."
    who = " ".join(mention(a) for a in still_to_vote(approvers, quorum))
    return f"{who}: {waiting}.{progress} Please decide."


def escalation_text(
    approval: Approval,
    rules: QueueRules,
    permalink: str | None,
    now: datetime,
    quorum: Quorum = NO_VOTES,
) -> str:
    what = escape(no_links(title_of(approval, rules))).replace("|", "¦")
    where = f"<{permalink}|{what}>" if permalink else f"*{what}* ({code(approval.id)})"
    after = f"after {approval.reminders_sent} reminders ({age(approval.created_at, now)} waiting)"
    on = f"{where} on {code(approval.queue_name)}"
    more = quorum.required - len(quorum.voters)
    if quorum.voters and more > 0:
        needs = f"{more} more approval{'s' if more > 1 else ''}"
        text = f":rotating_light: {on} still needs {needs} {after}.{so_far(quorum)}"
    else:
        text = f":rotating_light: Nobody has decided {on} {after}."
    if who := " ".join(mention(a) for a in still_to_vote(rules.approvers, quorum)):
        text += f" Who can decide: {who}"
    return text
