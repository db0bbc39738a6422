"""Approve and Reject buttons, the reject reason and step-up confirm modals, and "View full
payload"."""

from __future__ import annotations

import asyncio
import logging

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.models.views import View

from app import errors
from app.config import Policy
from app.db.models import Approval, Status
from app.interactions.listeners import services
from app.interactions.listeners.listing import show_again
from app.interactions.respond import MODAL_FAILED, open_modal, tell
from app.payload import at_path, typed_matches
from app.slack.blocks.approval import title_of
from app.slack.blocks.modals import confirm_modal, payload_modal, reject_modal
from app.slack.blocks.templates import label
from app.slack.blocks.text import code, escape, mention
from app.slack.ids import (
    CONFIRM_BLOCK,
    CONFIRM_INPUT,
    REASON_BLOCK,
    REASON_INPUT,
    REASON_MAX,
    DecisionForm,
    ListPage,
    approval_of,
)

log = logging.getLogger(__name__)


def button_approval(action: dict) -> str | None:
    approval_id = approval_of(action)
    if approval_id is None:
        log.warning("ignored a click whose value and action id disagree")
    return approval_id


def decision_form(
    approval_id: str, body: dict, action: dict, context: AsyncBoltContext
) -> DecisionForm:
    """Where a modal opened from this click answers: the tab, the list page, the message."""
    listed = None
    if body.get("container", {}).get("is_ephemeral"):
        listed = ListPage.of_item(action.get("block_id") or "")
    return DecisionForm(
        id=approval_id,
        response_url=context["response_url"],
        home=True if context.get("home_user") else None,
        listed=listed,
    )


async def open_form(
    context: AsyncBoltContext, trigger_id: str, form: DecisionForm, modal: View
) -> None:
    opened = await open_modal(services(context).slack, trigger_id, form.response_url, modal)
    if not opened and form.home:
        await services(context).home.show(context["home_user"], MODAL_FAILED)


async def approve(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    if not (approval_id := button_approval(action)):
        return
    decider = services(context).decider
    user = body["user"]["id"]
    form = decision_form(approval_id, body, action, context)
    try:
        approval = await decider.decide(approval_id, user, Status.APPROVED)
    except errors.ConfirmationNeeded:
        # A step-up rule: the approver types the value in a form (its trigger_id is fresh).
        approval = await decider.load(approval_id)
        modal = confirm_modal(approval, decider.rules(approval), form)
        await open_form(context, body["trigger_id"], form, modal)
        return
    if form.home or form.listed or body.get("container", {}).get("is_ephemeral"):
        await _answer(context, user, form, approval)


async def _answer(
    context: AsyncBoltContext, user: str, form: DecisionForm, approval: Approval
) -> None:
    """The list or the tab does not show the channel message: say it worked, naming the job."""
    text = done_text(approval, services(context).decider.policy)
    if form.home:
        await services(context).home.show(user, text)
        return
    if form.listed:
        # The page it was on, again: no live buttons left on what was decided.
        await show_again(context, user, form.listed, form.response_url)
    await tell(form.response_url, text)


async def submitted(
    ack: AsyncAck, view: dict, context: AsyncBoltContext
) -> tuple[DecisionForm, Approval] | None:
    """The form's approval as stored, or None (acked) for metadata we did not write or an
    approval no longer stored."""
    form = DecisionForm.load(view.get("private_metadata") or "")
    approval = await services(context).approvals.get(form.id) if form else None
    if form is None or approval is None:
        await ack()
        return None
    return form, approval


async def confirm_submitted(
    ack: AsyncAck, body: dict, view: dict, context: AsyncBoltContext
) -> None:
    state = view["state"]["values"].get(CONFIRM_BLOCK, {}).get(CONFIRM_INPUT, {})
    typed = (state.get("value") or "").strip()
    if not (found := await submitted(ack, view, context)):
        return
    form, approval = found
    decider = services(context).decider
    path = decider.rules(approval).confirm
    if path is not None and not typed_matches(typed, at_path(approval.payload, path)):
        # Refused inside the form: nothing is decided, and the approver can look again.
        wrong = f"That is not this job's {label(path).lower()}. Check it against the request."
        await ack(response_action="errors", errors={CONFIRM_BLOCK: wrong})
        return
    await ack()
    user = body["user"]["id"]
    decided = await decider.decide(form.id, user, Status.APPROVED, typed=typed)
    if form.home or form.listed:
        await _answer(context, user, form, decided)


def done_text(approval: Approval, policy: Policy) -> str:
    """ "Approved *title* (job `x` on `q`).", or that the approval counted towards a quorum."""
    rules = policy.rules_of(approval.queue_name, approval.rules)
    job = f"job {code(approval.job_id)} on {code(approval.queue_name)}"
    if rules.title:
        job = f"*{escape(title_of(approval, rules))}* ({job})"
    if approval.status == Status.PENDING:
        return f"Your approval of {job} counts; it waits for more approvals."
    verb = "Rejected" if approval.status == Status.REJECTED else "Approved"
    return f"{verb} {job}."


async def reject(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    if not (approval_id := button_approval(action)):
        return
    approval = await services(context).decider.vet(approval_id, body["user"]["id"], "reject")
    form = decision_form(approval_id, body, action, context)
    await open_form(context, body["trigger_id"], form, reject_modal(approval, form))


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
    if not (form := DecisionForm.load(view.get("private_metadata") or "")):
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
    if not (approval_id := button_approval(action)):
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
    # Up to 150k characters of a megabyte payload: rendered off the event loop.
    modal = await asyncio.to_thread(payload_modal, approval, rules.mask)
    await open_modal(services(context).slack, body["trigger_id"], context["response_url"], modal)


async def open_link(ack: AsyncAck) -> None:
    """ "Open in Rotor" is a URL button: Slack opens the page, and wants an ack."""
    await ack()
