"""The `/approvals` list: a page of approvals, buttons on the pending ones, "More"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, DividerBlock, SectionBlock

from app.config import QueueRules
from app.db.models import Status
from app.slack.blocks import templates
from app.slack.blocks.parts import Quorum, chars, decision_buttons, rule_line, summary_line
from app.slack.blocks.text import (
    ago,
    clip_mrkdwn,
    code,
    escape,
    mention,
    mrkdwn,
    quoted,
)
from app.slack.ids import USER_ID, ActionId, ListPage

LIST_PAGE_SIZE = 15  # two blocks an item keeps a page under the 50-block limit
LIST_CHARS = 12_000  # Slack refuses blocks holding about 13,000 (msg_blocks_too_long)
ITEM_CHARS, ITEM_CHARS_MIN = 2900, 200  # Slack's section text is 3000
REASON_CHARS = 300


@dataclass(frozen=True)
class ListQuery:
    """What `/approvals` was asked for."""

    status: Status = Status.PENDING
    queue: str | None = None
    mine: bool = False  # what waits on the person asking


@dataclass(frozen=True)
class ListItem:
    id: str
    queue_name: str
    job_id: str
    status: Status
    payload: Any
    created_at: datetime | None
    decided_by: str | None = None
    reason: str | None = None
    voters: tuple[str, ...] = ()  # who has approved so far, for a queue that needs several
    rules: QueueRules | None = None  # how it is handled; None: as a queue with no keys

    @property
    def handling(self) -> QueueRules:
        return self.rules or QueueRules(queue=self.queue_name)


def decided_line(item: ListItem) -> str | None:
    """Who decided, and why quoted on lines of its own, as far as Rotor says."""
    if item.status == Status.PENDING or not (item.decided_by or item.reason):
        return None
    verb = "Approved" if item.status == Status.APPROVED else "Rejected"
    line = verb
    if item.decided_by:
        by = item.decided_by
        line += " by " + (mention(by) if USER_ID.match(by) else code(by, 100))
    if item.reason:
        line += "\n" + quoted(item.reason, REASON_CHARS)
    return line


def item_line(item: ListItem, now: datetime, limit: int = ITEM_CHARS) -> str:
    """Title (if the queue has one), queue · job · age, the rule that applied, who decided,
    then the summary or payload."""
    rules = item.handling
    when = ago(item.created_at, now)
    lines = [f"{code(item.queue_name, 100)} · {code(item.job_id, 100)} · {when}"]
    if rules.rule:
        lines.append(rule_line(rules))
    if decided := decided_line(item):
        lines.append(decided)
    required = rules.required_approvals
    if item.status == Status.PENDING and required > 1:
        lines.append(Quorum(required, list(item.voters)).progress())
    if rules.title:
        facts = templates.Facts.of(
            item.payload, item.job_id, item.id, item.queue_name, rules.mask, templates.named(rules)
        )
        lines.insert(0, "*" + escape(templates.title(rules.title, facts, "")) + "*")
    lines.append(summary_line(item, rules))
    return clip_mrkdwn("\n".join(lines), limit)


def approvals_list(
    items: list[ListItem],
    query: ListQuery,
    next_cursor: str | None,
    now: datetime,
    page: int,
    cursor: str | None = None,
    item_chars: int = ITEM_CHARS,
) -> list[Block]:
    """`items` only of queues the person may decide (what else there was goes unsaid); `cursor`
    is what fetched this page (its buttons carry it, to show the page again after a click).
    Items' texts are shortened when the page would hold more than Slack takes (as sent)."""
    here = ListPage(
        status=query.status, queue=query.queue, cursor=cursor, page=page, mine=query.mine
    )
    scope = f" in {code(query.queue, 100)}" if query.queue else ""
    title = f"*{query.status.capitalize()} approvals*{scope}"
    if query.mine:
        title = f"*Approvals waiting on you*{scope}, oldest first"
    if not items:
        title += "\nNothing here."
    blocks: list[Block] = [SectionBlock(block_id=f"list-title-{page}", text=mrkdwn(title))]
    for item in items:
        line = item_line(item, now, item_chars)
        blocks.append(SectionBlock(block_id=f"item-{item.id}", text=mrkdwn(line)))
        if item.status == Status.PENDING:
            blocks.append(
                ActionsBlock(
                    block_id=here.on_item(item.id),
                    elements=decision_buttons(item.id, item.handling),
                )
            )
    if next_cursor:
        more = ListPage(status=query.status, queue=query.queue, cursor=next_cursor, page=page + 1)
        blocks.append(DividerBlock(block_id=f"list-end-{page}"))
        blocks.append(
            ActionsBlock(
                block_id=f"list-more-{page}",
                elements=[
                    ButtonElement(text="More", action_id=ActionId.LIST_MORE, value=more.dump())
                ],
            )
        )
    over = chars([b.to_dict() for b in blocks]) - LIST_CHARS
    if over > 0 and items and item_chars > ITEM_CHARS_MIN:
        shorter = max(ITEM_CHARS_MIN, min(item_chars, 2900) - over // len(items) - 50)
        return approvals_list(items, query, next_cursor, now, page, cursor, shorter)
    return blocks
