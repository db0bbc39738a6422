"""Edit before approve: the Edit button opens the form; its submission is checked inside the
form (a number that is not one, nothing changed), then handed to `app.edits` to carry out."""

from __future__ import annotations

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from app.edits import new_job_id, read_form
from app.interactions.listeners import services
from app.interactions.listeners.decide import button_approval, decision_form, open_form, submitted
from app.interactions.respond import tell
from app.payload import at_path
from app.slack.blocks.edits import edit_modal
from app.slack.blocks.text import code
from app.slack.ids import NOTE_BLOCK, VALUE_INPUT, edit_block

NOT_EDITABLE = "This queue's approvals cannot be edited here."


async def edit(ack: AsyncAck, body: dict, action: dict, context: AsyncBoltContext) -> None:
    await ack()
    if not (approval_id := button_approval(action)):
        return
    decider = services(context).decider
    approval = await decider.vet(approval_id, body["user"]["id"], "edit")
    rules = decider.rules(approval)
    form = decision_form(approval_id, body, action, context)
    if not rules.editable:
        await tell(form.response_url, NOT_EDITABLE)
        return
    await open_form(context, body["trigger_id"], form, edit_modal(approval, rules, form))


async def edit_submitted(ack: AsyncAck, body: dict, view: dict, context: AsyncBoltContext) -> None:
    if not (found := await submitted(ack, view, context)):
        return
    form, approval = found
    decider = services(context).decider
    rules = decider.rules(approval)
    state = view.get("state", {}).get("values", {})
    typed = {
        path: _typed(state, edit_block(i))
        for i, path in enumerate(rules.editable)
        if edit_block(i) in state
    }
    values, wrong = read_form(rules.editable, approval.payload, typed)
    errors = {edit_block(rules.editable.index(path)): why for path, why in wrong.items()}
    if not errors and all(at_path(approval.payload, p) == v for p, v in values.items()):
        first = edit_block(rules.editable.index(next(iter(values)))) if values else NOTE_BLOCK
        errors = {first: "Nothing is changed: correct a value, or close the form."}
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    await ack()
    user = body["user"]
    approval = await decider.vet(form.id, user["id"], "edit")
    name = user.get("name") or user.get("username") or user["id"]
    note = _typed(state, NOTE_BLOCK)
    await services(context).editor.start(approval, rules.editable, user["id"], name, values, note)
    done = (
        f"The corrected job {code(new_job_id(approval.id))} is being enqueued; this one will be "
        "rejected as superseded. Someone else approves the corrected job."
    )
    if form.home:
        await services(context).home.show(user["id"], done)
    else:
        await tell(form.response_url, done)


def _typed(state: dict, block: str) -> str | None:
    value = state.get(block, {}).get(VALUE_INPUT, {}).get("value")
    return value if isinstance(value, str) else None
