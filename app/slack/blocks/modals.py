"""Modals: the reject reason form and the full payload."""

from __future__ import annotations

from collections.abc import Collection

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from app.config import QueueRules
from app.db.models import Approval
from app.slack.blocks.templates import label
from app.slack.blocks.text import code, code_block, escape, mrkdwn, pretty_payload
from app.slack.ids import (
    CONFIRM_BLOCK,
    CONFIRM_INPUT,
    CONFIRM_MAX,
    REASON_BLOCK,
    REASON_INPUT,
    REASON_MAX,
    CallbackId,
    DecisionForm,
)

MODAL_CHUNK_CHARS = 2900
MODAL_MAX_CHARS = 150_000  # views.open refuses views over 250 KB


def _job_on_queue(approval: Approval) -> str:
    return f"{code(approval.job_id)} on {code(approval.queue_name)}"


def reject_modal(approval: Approval, form: DecisionForm) -> View:
    return View(
        type="modal",
        callback_id=CallbackId.REJECT,
        private_metadata=form.dump(),
        title="Reject approval",
        submit="Reject",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=mrkdwn(f"Rejecting job {_job_on_queue(approval)}. Rejection is final.")
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


def confirm_modal(approval: Approval, rules: QueueRules, form: DecisionForm) -> View:
    """Step-up: the approver types the payload value at `rules.confirm`, read off the request
    (the form does not show it: typing it is the point)."""
    what = label(rules.confirm or "")
    why = f"The rule *{escape(rules.rule)}* asks" if rules.rule else "This queue asks"
    return View(
        type="modal",
        callback_id=CallbackId.CONFIRM,
        private_metadata=form.dump(),
        title="Confirm approval",
        submit="Approve",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=mrkdwn(
                    f"Approving job {_job_on_queue(approval)}. {why} you to type its "
                    f"*{escape(what.lower())}*, as the request shows it, to approve."
                )
            ),
            InputBlock(
                block_id=CONFIRM_BLOCK,
                label=what[:2000] or "Value",
                element=PlainTextInputElement(action_id=CONFIRM_INPUT, max_length=CONFIRM_MAX),
            ),
        ],
    )


def payload_modal(approval: Approval, mask: Collection[str] = ()) -> View:
    text = pretty_payload(approval.payload, mask, MODAL_MAX_CHARS)  # a bounded walk
    shown = text[:MODAL_MAX_CHARS]
    chunks = [shown[i : i + MODAL_CHUNK_CHARS] for i in range(0, len(shown), MODAL_CHUNK_CHARS)]
    blocks: list[Block] = [SectionBlock(text=mrkdwn(f"Job {_job_on_queue(approval)}"))]
    blocks += [code_block(chunk, f"payload-{i}") for i, chunk in enumerate(chunks or [""])]
    if len(text) > len(shown):
        note = "The rest of the payload is not shown; read the job in Rotor."
        blocks.append(ContextBlock(elements=[PlainTextObject(text=note)]))
    return View(type="modal", title="Payload", close="Close", blocks=blocks)
