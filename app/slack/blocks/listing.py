"""The `/approvals` list: a page of approvals, buttons on the pending ones, "More"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, DividerBlock, SectionBlock

from app.db.models import Status
from app.slack.blocks.approval import decision_buttons
from app.slack.blocks.text import age, clip, escape, mrkdwn, one_line
from app.slack.commands import ListQuery
from app.slack.ids import ActionId, ListPage

LIST_PAGE_SIZE = 15  # two blocks an item keeps a page under the 50-block limit


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
        if item.status == Status.PENDING:
            blocks.append(
                ActionsBlock(
                    block_id=f"decide-{item.id}",
                    elements=decision_buttons(item.id, item.queue_name),
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
    return blocks
