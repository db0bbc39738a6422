"""Approve and Reject buttons, the reject reason modal, and "View full payload"."""

from __future__ import annotations

import logging

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from app.config import Policy
from app.db.models import Approval, Status
from app.interactions.listeners import services
from app.interactions.listeners.listing import show_again
from app.interactions.respond import MODAL_FAILED, open_modal, tell
from app.slack.blocks.approval import title_of
from app.slack.blocks.modals import payload_modal, reject_modal
from app.slack.blocks.text import code, escape, mention
from app.slack.ids import (
    REASON_BLOCK,
    REASON_INPUT,
    REASON_MAX,
    ListPage,
    RejectForm,
    approval_of,
)

log = logging.getLogger(__name__)


def _button_approval(action: dict) -> str | None:
    approval_id = approval_of(action)
    if approval_id is None:
        log.warning("ignored a click whose value and action id disagree")
    return approval_id


async def approve(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    if not (approval_id := _button_approval(action)):
        return
    decider = services(context).decider
    user = body["user"]["id"]
    approval = await decider.decide(approval_id, user, Status.APPROVED)
    home_user = context.get("home_user")
    if home_user or body.get("container", {}).get("is_ephemeral"):
        # The list or the tab does not show the channel message: say it worked, naming the job.
        text = done_text(approval, decider.policy)
        if home_user:
            await services(context).home.show(home_user, text)
            return
        if listed := ListPage.of_item(action.get("block_id") or ""):
            # The page it was on, again: no live buttons left on what was decided.
            await show_again(context, user, listed, context["response_url"])
        await tell(context["response_url"], text)


def done_text(approval: Approval, policy: Policy) -> str:
    """ "Approved *title* (job `x` on `q`).", or that the approval counted towards a quorum."""
    rules = policy.rules_for(approval.queue_name)
    job = f"job {code(approval.job_id)} on {code(approval.queue_name)}"
    if rules.title:
        job = f"*{escape(title_of(approval, rules))}* ({job})"
    if approval.status == Status.PENDING:
        return f"Your approval of {job} counts; it waits for more approvals."
    verb = "Rejected" if approval.status == Status.REJECTED else "Approved"
    return f"{verb} {job}."


async def reject(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    if not (approval_id := _button_approval(action)):
        return
    approval = await services(context).decider.vet(approval_id, body["user"]["id"], "reject")
    home_user = context.get("home_user")
    listed = None
    if body.get("container", {}).get("is_ephemeral"):
        listed = ListPage.of_item(action.get("block_id") or "")
    form = RejectForm(
        id=approval_id,
        response_url=context["response_url"],
        home=True if home_user else None,
        listed=listed,
    )
    modal = reject_modal(approval, form)
    slack = services(context).slack
    if not await open_modal(slack, body["trigger_id"], form.response_url, modal) and home_user:
        await services(context).home.show(home_user, MODAL_FAILED)


async def reject_submitted(
    ack: AsyncAck, body: dict, view: dict, context: AsyncBoltContext
) -> None:
    state = view["state"]["values"].get(REASON_BLOCK, {}).get(REASON_INPUT, {})
    reason = (state.get("value") or "").strip()
    if not reason:
        await ack(response_action="errors", errors={REASON_BLOCK: "Give a reason."})
        return
    if len(reason) > REASON_MAX:
        await ack(
            response_action="errors",
            errors={REASON_BLOCK: f"Keep it under {REASON_MAX} characters."},
        )
        return
    await ack()
    if not (form := RejectForm.load(view.get("private_metadata") or "")):
        return  # not metadata we wrote
    user = body["user"]["id"]
    decider = services(context).decider
    approval = await decider.decide(form.id, user, Status.REJECTED, reason)
    if form.listed:
        await show_again(context, user, form.listed, context["response_url"])
    if form.home:
        await services(context).home.show(user, done_text(approval, decider.policy))


async def view_payload(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    if not (approval_id := _button_approval(action)):
        return
    approval = await services(context).approvals.get(approval_id)
    if approval is None:
        await tell(context["response_url"], "This approval is not stored here.")
        return
    decider = services(context).decider
    # Privacy: the whole payload only for those who may decide the queue.
    rules = decider.rules(approval)
    if not await decider.may_decide(body["user"]["id"], rules):
        approvers = rules.approvers or ()
        who = " ".join(mention(a) for a in approvers[:20]) or f"the members of <#{rules.channel}>"
        await tell(
            context["response_url"],
            f"Only the approvers of {code(approval.queue_name)} can see the full payload: {who}.",
        )
        return
    modal = payload_modal(approval, rules.mask)
    await open_modal(services(context).slack, body["trigger_id"], context["response_url"], modal)


async def open_link(ack: AsyncAck) -> None:
    """ "Open in Rotor" is a URL button: Slack opens the page, and wants an ack."""
    await ack()
