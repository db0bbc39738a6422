"""`/approvals` and its "More" button."""

from __future__ import annotations

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from app.db.models import utcnow
from app.rotor import RotorError
from app.slack.blocks.listing import LIST_PAGE_SIZE, ListItem, approvals_list
from app.slack.commands import HELP, ListQuery, parse_list_command
from app.slack.ids import ListPage
from app.slack.listeners import services
from app.slack.respond import answer, tell


async def approvals_command(ack: AsyncAck, command: dict, context: AsyncBoltContext) -> None:
    query = parse_list_command(command.get("text") or "")
    if query is None:
        await ack(text=HELP)
        return
    await ack()
    await _send_list(context, query, cursor=None, page=0, replace=False)


async def more(ack: AsyncAck, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    state = ListPage.load(action["value"])
    if state is None:
        return  # not a value we made
    query = ListQuery(status=state.status, queue=state.queue)
    await _send_list(context, query, cursor=state.cursor, page=state.page, replace=True)


async def _send_list(
    context: AsyncBoltContext,
    query: ListQuery,
    cursor: str | None,
    page: int,
    replace: bool,
) -> None:
    try:
        result = await services(context).rotor.list_approvals(
            status=query.status, queue=query.queue, limit=LIST_PAGE_SIZE, cursor=cursor
        )
    except RotorError as e:
        await tell(context["response_url"], f"Could not list approvals: {e}")
        return
    items = [
        ListItem(a.id, a.queue_name, a.job_id, a.status, a.payload, a.created_at)
        for a in result.approvals
    ]
    listing = approvals_list(items, query, result.next_cursor, utcnow(), page)
    await answer(
        context["response_url"],
        text=f"{query.status.capitalize()} approvals",
        blocks=[b.to_dict() for b in listing],
        response_type="ephemeral",
        replace_original=replace,
    )
