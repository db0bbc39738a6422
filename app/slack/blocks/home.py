"""The Home tab: what waits on one person, grouped by queue, oldest first. Pure.

Slack allows 100 blocks in a view: the oldest approvals are shown and the rest counted
("… and 37 more in #finance"), and each one's text is shortened when the whole would pass
Slack's 250 KB, so the view always publishes. Block ids never carry outside text (a queue's
name could repeat another's id, or pass 255 characters): groups go by their index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from app.config import QueueRules
from app.db.approvals import Waiting
from app.db.models import Approval
from app.slack.blocks.approval import title_of
from app.slack.blocks.edits import edit_button
from app.slack.blocks.parts import Quorum, decision_buttons, rule_line, summary_line
from app.slack.blocks.text import clip_mrkdwn, code, escape, mrkdwn, slack_ago
from app.slack.ids import ActionId

VIEW_BLOCKS_MAX = 100
TOP_BLOCKS = 3  # notice, header, oldest
GROUP_BLOCKS = 3  # divider, queue line, "… and N more"
ITEM_BLOCKS = 2  # what it is, buttons
VIEW_BYTES = 200_000  # Slack refuses views over 250 KB, as sent (JSON: an emoji takes 12 bytes)
ITEM_CHARS = 2900  # Slack's section text is 3000
ITEM_CHARS_MIN = 300


@dataclass(frozen=True)
class Group:
    queue_name: str
    channel: str
    shown: list[Waiting] = field(default_factory=list)
    more: int = 0


@dataclass(frozen=True)
class Layout:
    """Which approvals fit in the view, and how many are only counted."""

    groups: list[Group]
    total: int
    oldest: Waiting | None
    other_queues: int = 0  # approvals in queues with no room even for a line

    @property
    def shown_ids(self) -> list[str]:
        return [w.id for g in self.groups for w in g.shown]


def fit(waiting: list[Waiting]) -> Layout:
    """Oldest first: queues in the order of their oldest approval, and within each as many as
    the block limit leaves room for."""
    by_queue: dict[str, list[Waiting]] = {}
    for item in waiting:
        by_queue.setdefault(item.queue_name, []).append(item)
    room = VIEW_BLOCKS_MAX - TOP_BLOCKS
    queues = list(by_queue.values())
    kept = queues[: room // GROUP_BLOCKS]
    if len(kept) < len(queues):  # no room for every queue: the rest get one line together
        kept = queues[: (room - 1) // GROUP_BLOCKS]
        room -= 1
    room -= GROUP_BLOCKS * len(kept)
    groups = []
    for items in kept:
        take = min(len(items), room // ITEM_BLOCKS)
        room -= ITEM_BLOCKS * take
        if take == len(items):
            room += 1  # no "… and N more" line
        groups.append(Group(items[0].queue_name, items[0].channel, items[:take], len(items) - take))
    other = sum(len(items) for items in queues[len(kept) :])
    return Layout(groups, len(waiting), waiting[0] if waiting else None, other)


@dataclass(frozen=True)
class Shown:
    """One approval on the tab, with what the view needs beyond its row."""

    approval: Approval
    rules: QueueRules
    quorum: Quorum
    link: str | None  # the channel message


def home_view(
    layout: Layout,
    shown: Callable[[str], Shown | None],
    notice: str | None = None,
) -> View:
    """The tab; each item's text shortened as much as it takes to keep within VIEW_BYTES."""
    item_chars = ITEM_CHARS
    while True:
        view = _home_view(layout, shown, notice, item_chars)
        size = len(json.dumps(view.to_dict()))
        if size <= VIEW_BYTES or item_chars <= ITEM_CHARS_MIN:
            return view
        item_chars = max(ITEM_CHARS_MIN, item_chars * VIEW_BYTES // size - 100)


def _home_view(
    layout: Layout, shown: Callable[[str], Shown | None], notice: str | None, item_chars: int
) -> View:
    blocks: list[Block] = []
    if notice:
        blocks.append(SectionBlock(block_id="notice", text=mrkdwn(clip_mrkdwn(notice, 2900))))
    count = layout.total
    title = (
        f"{count} approval{'s' if count != 1 else ''} wait{'s' if count == 1 else ''} on you"
        if count
        else "Nothing waits on you"
    )
    blocks.append(HeaderBlock(block_id="home-title", text=PlainTextObject(text=title)))
    if layout.oldest:
        oldest = f"The oldest was requested {slack_ago(layout.oldest.created_at)}."
    else:
        oldest = "Approvals you may decide appear here as they arrive."
    blocks.append(ContextBlock(block_id="home-oldest", elements=[mrkdwn(oldest)]))
    for i, group in enumerate(layout.groups):
        n = len(group.shown) + group.more
        line = f"{code(group.queue_name, 100)} in <#{group.channel}> · {n} waiting"
        blocks.append(DividerBlock(block_id=f"queue-end-{i}"))
        blocks.append(SectionBlock(block_id=f"queue-{i}", text=mrkdwn(line)))
        for item in group.shown:
            if (found := shown(item.id)) is not None:
                blocks += _item_blocks(found, item_chars)
        if group.more:
            more = f"… and {group.more} more in <#{group.channel}>"
            blocks.append(ContextBlock(block_id=f"more-{i}", elements=[mrkdwn(more)]))
    if layout.other_queues:
        more = f"… and {layout.other_queues} more in other queues: `/approvals mine` lists them."
        blocks.append(ContextBlock(block_id="more-elsewhere", elements=[mrkdwn(more)]))
    return View(type="home", blocks=blocks)


def notice_view(notice: str) -> View:
    """Only a notice: what the tab shows when its list cannot be read (the database is away)."""
    later = "Your list is shown again as soon as the service's database answers."
    return View(
        type="home",
        blocks=[
            SectionBlock(block_id="notice", text=mrkdwn(clip_mrkdwn(notice, 2900))),
            ContextBlock(block_id="home-later", elements=[mrkdwn(later)]),
        ],
    )


def _item_blocks(item: Shown, item_chars: int) -> list[Block]:
    approval = item.approval
    lines = ["*" + escape(title_of(approval, item.rules)) + "*"]
    if item.rules.rule:
        lines.append(rule_line(item.rules))
    lines.append(summary_line(approval, item.rules))
    facts = [f"requested {slack_ago(approval.created_at)}"]
    if approval.requester:
        facts.append(f"by <@{approval.requester}>")
    if item.quorum.required > 1:
        facts.append(item.quorum.progress())
    lines.append(" · ".join(facts))
    buttons = decision_buttons(approval.id, item.rules) + edit_button(approval, item.rules)
    if item.link:
        buttons.append(
            ButtonElement(
                text="Open in channel", action_id=ActionId.OPEN_LINK.on(approval.id), url=item.link
            )
        )
    return [
        SectionBlock(
            block_id=f"item-{approval.id}", text=mrkdwn(clip_mrkdwn("\n".join(lines), item_chars))
        ),
        ActionsBlock(block_id=f"decide-{approval.id}", elements=buttons),
    ]
