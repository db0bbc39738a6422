"""Edit before approve in Block Kit: the Edit button and form, what a corrected job's message
says it changed, and what the original's message says became of it. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    NumberInputElement,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from app.config import QueueRules
from app.db.models import Approval, Status
from app.payload import MISSING, TEXT_MAX, at_path, editable_value, is_number
from app.slack.blocks.templates import label
from app.slack.blocks.text import MASK, clip, code, escape, mask_text, mrkdwn, one_line_clean
from app.slack.blocks.text import secret_key as looks_secret
from app.slack.ids import (
    NOTE_BLOCK,
    NOTE_MAX,
    VALUE_INPUT,
    ActionId,
    CallbackId,
    DecisionForm,
    edit_block,
)

LONG_TEXT = 80  # characters past which (or with a newline) a value gets a multi-line input
VALUE_CHARS = 200  # of each value shown before → after


@dataclass(frozen=True)
class EditLinks:
    """Links between an original and its corrected job's messages, when Slack gave them."""

    original: str | None = None  # on the corrected job's message: the original's
    corrected: str | None = None  # on the original's: the corrected job's


def edit_button(approval: Approval, rules: QueueRules) -> list[ButtonElement]:
    """Edit, on a pending approval whose rules let approvers correct it (once)."""
    if not rules.editable or approval.status != Status.PENDING or approval.edit:
        return []
    return [ButtonElement(text="Edit", action_id=ActionId.EDIT.on(approval.id), value=approval.id)]


def edit_blocks(approval: Approval, rules: QueueRules, links: EditLinks) -> list[Block]:
    """What the message says of an edit: where a corrected job came from and what changed, or
    what became of an original."""
    edit = approval.edit or {}
    by = f"<@{edit['by']}>" if isinstance(edit.get("by"), str) else "an approver"
    if "from" in edit:  # the corrected job
        job = code(str(edit.get("from_job", "")), 100)
        source = f"<{links.original}|job {job}>" if links.original else f"job {job}"
        lines = [_change(path, old, new, rules) for path, old, new in edit.get("changes", [])]
        blocks: list[Block] = [
            ContextBlock(
                block_id="edited", elements=[mrkdwn(f":pencil2: Edited by {by} from {source}")]
            )
        ]
        if lines:
            text = clip("*Changed*\n" + "\n".join(lines), 2900)
            blocks.append(SectionBlock(block_id="changes", text=mrkdwn(text)))
        return blocks
    if "job" not in edit:
        return []
    job = code(str(edit["job"]), 100)
    outcome = edit.get("outcome")
    if outcome == "dropped":
        line = f":pencil2: {by}'s correction was not applied: this approval was decided first."
    elif outcome == "enqueued_too":
        line = (
            f":pencil2: {by}'s correction was enqueued as {job}, but this approval was decided "
            "outside Slack before it could be rejected."
        )
    elif outcome == "superseded":
        where = f"<{links.corrected}|job {job}>" if links.corrected else f"job {job}"
        line = f":pencil2: Superseded by {where}, corrected by {by}."
    else:
        line = f":pencil2: {by} corrected this job: the corrected one ({job}) replaces it."
    return [ContextBlock(block_id="superseded", elements=[mrkdwn(line)])]


def _change(path: str, old: Any, new: Any, rules: QueueRules) -> str:
    return f"• *{escape(label(path))}*: {_shown(path, old, rules)} → {_shown(path, new, rules)}"


def _shown(path: str, value: Any, rules: QueueRules) -> str:
    """A value as the preview would show it: masked, one clean line, clipped, escaped."""
    if value is None or value is MISSING:
        return "_(none)_"
    if path in rules.mask or looks_secret(path.rsplit(".", 1)[-1]):
        return MASK
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return code(mask_text(one_line_clean(text, VALUE_CHARS)), VALUE_CHARS)


def edit_modal(approval: Approval, rules: QueueRules, form: DecisionForm) -> View:
    """One input per editable path, filled with today's value (long text multi-line, a number
    as a number), and an optional note. Paths whose value is an object or a list are left out:
    only text and numbers can be corrected in a form."""
    blocks: list[Block] = [
        SectionBlock(
            text=mrkdwn(
                f"Correct job {code(approval.job_id)} on {code(approval.queue_name)}. The "
                "corrected job is enqueued in its place, and this one is rejected."
            )
        )
    ]
    for index, path in enumerate(rules.editable):
        value = at_path(approval.payload, path)
        if not editable_value(value):
            continue
        blocks.append(
            InputBlock(
                block_id=edit_block(index),
                label=clip(label(path), 2000),
                element=_input(value),
                optional=not is_number(value),
            )
        )
    blocks.append(
        InputBlock(
            block_id=NOTE_BLOCK,
            label="Note (optional)",
            element=PlainTextInputElement(action_id=VALUE_INPUT, max_length=NOTE_MAX),
            optional=True,
        )
    )
    return View(
        type="modal",
        callback_id=CallbackId.EDIT,
        private_metadata=form.dump(),
        title="Edit before approving",
        submit="Enqueue corrected",
        close="Cancel",
        blocks=blocks,
    )


def _input(value: Any) -> NumberInputElement | PlainTextInputElement:
    if is_number(value):
        return NumberInputElement(
            action_id=VALUE_INPUT,
            is_decimal_allowed=isinstance(value, float),
            initial_value=repr(value),
        )
    text = value if isinstance(value, str) else ""
    return PlainTextInputElement(
        action_id=VALUE_INPUT,
        multiline=len(text) > LONG_TEXT or "\n" in text,
        initial_value=text or None,
        max_length=TEXT_MAX,
    )
