"""`/approvals` and its "More" button."""

from __future__ import annotations

import dataclasses
import difflib
from datetime import datetime

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.models.blocks import ContextBlock

from app.config import QueueRules
from app.db.models import Approval, Status, utcnow
from app.interactions.commands import (
    ListQuery,
    looks_like_status,
    parse_list_command,
    unknown_word,
)
from app.interactions.listeners import services
from app.interactions.respond import answer, tell
from app.rotor import RotorApproval, RotorError
from app.slack.blocks.listing import LIST_PAGE_SIZE, ListItem, approvals_list
from app.slack.blocks.text import mrkdwn
from app.slack.ids import ListPage


async def approvals_command(ack: AsyncAck, command: dict, context: AsyncBoltContext) -> None:
    query = parse_list_command(command.get("text") or "")
    if isinstance(query, str):
        await ack(text=query)
        return
    policy = services(context).decider.policy
    unknown = query.queue is not None and policy.queue(query.queue) is None
    user = command.get("user_id") or ""
    if query.queue is not None and unknown and looks_like_status(query.queue):
        await ack()
        await tell(context["response_url"], await _no_such_queue(context, user, query.queue))
        return
    await ack()
    if query.mine:
        await _send_mine(context, user, query, context["response_url"], replace=False)
        return
    await _send_list(
        context, user, query, cursor=None, page=0, replace=False, url=context["response_url"]
    )


async def show_again(
    context: AsyncBoltContext, user: str, listed: ListPage, url: str | None
) -> None:
    """A page of the list once more, in place of the one a decision was made on."""
    query = ListQuery(status=listed.status, queue=listed.queue, mine=listed.mine)
    if listed.mine:
        await _send_mine(context, user, query, url, replace=True)
    else:
        await _send_list(context, user, query, listed.cursor, listed.page, replace=True, url=url)


async def _send_mine(
    context: AsyncBoltContext, user: str, query: ListQuery, url: str | None, replace: bool
) -> None:
    """The Home tab's set (in one queue, if named): the oldest ones, and how many more."""
    waiting = await services(context).home.waiting_on(user)
    waiting = [w for w in waiting if query.queue in (None, w.queue_name)]
    shown = waiting[:LIST_PAGE_SIZE]
    found = await services(context).approvals.many([w.id for w in shown])
    voters = await services(context).decider.votes.of(list(found))
    policy = services(context).decider.policy
    items = [
        _with_voters(_item(a, policy.rules_of(a.queue_name, a.rules)), voters)
        for a in (found.get(w.id) for w in shown)
        if a is not None
    ]
    listing = approvals_list(items, query, None, utcnow(), 0)
    if len(waiting) > len(shown):
        more = f"… and {len(waiting) - len(shown)} more: the app's Home tab lists them all."
        listing.append(ContextBlock(block_id="mine-more", elements=[mrkdwn(more)]))
    await answer(
        url,
        text="Approvals waiting on you",
        blocks=[b.to_dict() for b in listing],
        response_type="ephemeral",
        replace_original=replace,
    )


async def more(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    state = ListPage.load(action["value"])
    if state is None:
        return  # not a value we made
    query = ListQuery(status=state.status, queue=state.queue)
    user = (body.get("user") or {}).get("id") or ""
    await _send_list(
        context, user, query, state.cursor, state.page, replace=True, url=context["response_url"]
    )


async def _send_list(
    context: AsyncBoltContext,
    user: str,
    query: ListQuery,
    cursor: str | None,
    page: int,
    replace: bool,
    url: str | None,
) -> None:
    rotor, decider = services(context).rotor, services(context).decider
    if query.queue and not await decider.may_see(user, query.queue):
        # Said exactly as for a queue that does not exist: whether it does is not theirs to see.
        await tell(url, await _no_such_queue(context, user, query.queue))
        return
    try:
        result = await rotor.list_approvals(
            status=query.status, queue=query.queue, limit=LIST_PAGE_SIZE, cursor=cursor
        )
        if query.queue and not result.approvals and cursor is None:
            # Nothing listed: a queue neither the policy nor Rotor (in any status) knows?
            unknown = not decider.policy.queue(query.queue) and not (
                (await rotor.list_approvals(queue=query.queue, limit=1)).approvals
            )
            if unknown:
                await tell(url, await _no_such_queue(context, user, query.queue))
                return
    except RotorError as e:
        await tell(url, f"Could not list approvals: {e}")
        return
    # Each item's rules: as kept when it arrived, else as it would get them now.
    stored = await services(context).approvals.many(
        [a.id for a in result.approvals], payloads=False
    )
    policy = decider.policy
    listed = [
        _item(
            a,
            policy.rules_of(a.queue_name, stored[a.id].rules)
            if a.id in stored
            else policy.resolve(a.queue_name, a.payload, a.job_id),
        )
        for a in result.approvals
    ]
    # Privacy: only what the person may decide (one check per set of deciders on the page), and
    # not a word of how many others there were.
    allowed: dict[tuple[tuple[str, ...] | None, str | None], bool] = {}
    for item in listed:
        who = item.handling.deciders
        if who not in allowed:
            allowed[who] = await decider.may_decide(user, item.handling)
    items = [i for i in listed if allowed[i.handling.deciders]]
    pending = [i.id for i in items if i.status == Status.PENDING]
    voters = await decider.votes.of(pending) if pending else {}
    items = [_with_voters(i, voters) for i in items]
    listing = approvals_list(items, query, result.next_cursor, utcnow(), page, cursor=cursor)
    await answer(
        url,
        text=f"{query.status.capitalize()} approvals",
        blocks=[b.to_dict() for b in listing],
        response_type="ephemeral",
        replace_original=replace,
    )


def _item(approval: Approval | RotorApproval, rules: QueueRules) -> ListItem:
    """A list item: an approval stored here, or one as Rotor lists it (who decided, why)."""
    a = approval
    return ListItem(
        a.id,
        a.queue_name,
        a.job_id,
        Status(a.status),
        a.payload,
        a.created_at,
        a.decided_by,
        a.reason,
        rules=rules,
    )


def _with_voters(item: ListItem, votes: dict[str, list[tuple[str, datetime]]]) -> ListItem:
    """The item with who has approved it so far (a quorum's progress)."""
    return dataclasses.replace(item, voters=tuple(user for user, _ in votes.get(item.id, ())))


async def _no_such_queue(context: AsyncBoltContext, user: str, word: str) -> str:
    """The answer for a queue that does not exist, and for one `user` may not see: the same,
    suggesting only a queue they may decide."""
    decider = services(context).decider
    close = difflib.get_close_matches(word, [q.name for q in decider.policy.queues], n=3)
    return unknown_word(word, [q for q in close if await decider.may_see(user, q)])
