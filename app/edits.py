"""Edit before approve: an approver corrects a payload in Slack; the corrected job is enqueued
on the same queue, then the original is rejected (Rotor's own answer to a wrong payload).

    Editor.start    the form was submitted: the original is claimed for the edit, the
                    correction kept with it and an `edit` outbox task queued, in one transaction
    Editor.finish   that task: read the original in Rotor, enqueue the corrected job (its jobId
                    derived from the original, so Rotor ignores a second enqueue), reject the
                    original, record it

Every step is safe to repeat, so a double submit, a crash or a Rotor outage between the steps
finishes later (the outbox retries the task) and never doubles or loses the edit.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from app import errors
from app.db import Store
from app.db.models import Approval, Status
from app.payload import MISSING, TEXT_MAX, at_path, editable_value, is_number, parse_number
from app.rotor import APPROVAL_ID_PATTERN, RotorClient, RotorConflict, RotorUnavailable
from app.slack.ids import NOTE_MAX

log = logging.getLogger(__name__)

EDIT_HOLD = timedelta(days=7)  # while its edit is under way, no click decides the original
JOB_PREFIX = "edit-"
# How an edit ended, kept with the original: replaced by the corrected job; both ran (the
# original was decided outside Slack between the two steps); or nothing enqueued.
SUPERSEDED, ENQUEUED_TOO, DROPPED = "superseded", "enqueued_too", "dropped"
EDIT_FROM = re.compile(rf"^{JOB_PREFIX}({APPROVAL_ID_PATTERN.strip('^$')})$")


def new_job_id(approval_id: str) -> str:
    """The corrected job's id, derived from the original approval: one edit, one job."""
    return f"{JOB_PREFIX}{approval_id}"


def edited_from(job_id: str) -> str | None:
    """The original approval a corrected job came from, if `job_id` is one of ours."""
    match = EDIT_FROM.fullmatch(job_id)
    return match[1] if match else None


def read_form(
    paths: tuple[str, ...], payload: Any, typed: dict[str, str | None]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the form says each path should become, and what is wrong (by path). A number stays
    a number: what does not parse as one is refused."""
    values: dict[str, Any] = {}
    wrong: dict[str, str] = {}
    for path in paths:
        current = at_path(payload, path)
        if not editable_value(current) or path not in typed:
            continue
        text = typed[path] or ""
        if len(text) > TEXT_MAX:  # the form's own limit; a forged submission may carry more
            wrong[path] = f"Keep it under {TEXT_MAX} characters."
            continue
        if is_number(current):
            number = parse_number(text)
            if number is None:
                wrong[path] = "Enter a number, like 48500 or 48,500.00."
                continue
            values[path] = _as_json_number(number, current)
        else:
            values[path] = text
    return values, wrong


def _as_json_number(number: Decimal, like: Any) -> int | float:
    if isinstance(like, int) and number == number.to_integral_value():
        return int(number)
    return float(number)


def corrected(payload: Any, values: dict[str, Any]) -> Any:
    """A copy of `payload` with each path set to its value; every other path as it was."""
    result = copy.deepcopy(payload)
    for path, value in values.items():
        *parents, last = path.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[last] = value
    return result


def changes(before: Any, after: Any, paths: tuple[str, ...]) -> list[list[Any]]:
    """`[path, before, after]` for each path the correction changed."""
    found = []
    for path in paths:
        old, new = at_path(before, path), at_path(after, path)
        if not (editable_value(old) and editable_value(new)):
            continue  # an object holding an edited path: its own paths say what changed
        if old != new or type(old) is not type(new):
            found.append([path, None if old is MISSING else old, None if new is MISSING else new])
    return found


def clean_name(name: Any) -> str:
    """A person's name for a reason Rotor keeps: one short line of printable text."""
    text = " ".join(str(name or "").split())
    return "".join(ch for ch in text if ch.isprintable())[:80] or "an approver"


def reason(edit: dict[str, Any]) -> str:
    text = f"Edited by {edit['by_name']}: superseded by {edit['job']}"
    return f"{text}. {edit['note']}" if edit.get("note") else text


class Editor:
    def __init__(self, store: Store, rotor: RotorClient) -> None:
        self.approvals, self.rotor = store.approvals, rotor
        # Set once the outbox exists (it runs this editor's tasks).
        self.wake_outbox: Callable[[], None] = lambda: None

    async def start(
        self,
        approval: Approval,
        editable: tuple[str, ...],
        user: str,
        name: str,
        values: dict[str, Any],
        note: str | None,
    ) -> None:
        """Keep the correction of a pending `approval` (vetted: `user` may decide it) and queue
        the task that carries it out; raises `errors.DecisionRefused` when it cannot be."""
        after = corrected(approval.payload, values)
        edit = {
            "by": user,
            "by_name": clean_name(name),
            "note": " ".join(str(note or "").split())[:NOTE_MAX] or None,
            "job": new_job_id(approval.id),
            "payload": after,
            "changes": changes(approval.payload, after, editable),
        }
        if not await self.approvals.start_edit(approval.id, user, edit, EDIT_HOLD):
            current = await self.approvals.get(approval.id) or approval
            if current.status != Status.PENDING:
                raise errors.AlreadyDecided(current)
            if current.edit:
                raise errors.EditUnderWay((current.edit or {}).get("by"))
            raise errors.ClaimHeld(current.claimed_by)
        log.info("edit queued", extra={"approval_id": approval.id, "user": user})
        self.wake_outbox()

    async def finish(self, approval: Approval) -> None:
        """The `edit` task: enqueue the corrected job, reject the original, record. Raises a
        Rotor error to be tried again (unavailable, rate limited)."""
        edit = approval.edit or {}
        if "job" not in edit or "outcome" in edit:
            return  # carried out already
        extra = {"approval_id": approval.id}
        real = await self.rotor.get_approval(approval.id)
        ours = reason(edit)
        if real.status == Status.PENDING:
            job = await self.rotor.enqueue(
                approval.queue_name,
                edit["payload"],
                [f"supersedes:{approval.job_id}"[:64], f"edited-by:{edit['by']}"[:64]],
                edit["job"],
            )
            log.info("edit: corrected job enqueued", extra=extra | {"job": job.id})
            try:
                await self.rotor.reject(approval.id, ours)
            except RotorConflict:
                real = await self.rotor.get_approval(approval.id)
            else:
                real = real.model_copy(update={"status": Status.REJECTED, "reason": ours})
        if real.status == Status.PENDING:
            raise RotorUnavailable("Rotor lists the original as pending still: tried again")
        if real.reason == ours:
            outcome = SUPERSEDED
        elif await self.rotor.job(approval.queue_name, edit["job"]):
            log.warning("edit: the original was decided after its correction was enqueued")
            outcome = ENQUEUED_TOO
        else:
            # Decided outside Slack before the correction went out: nothing is enqueued.
            log.info("edit: not applied, the original was decided first", extra=extra)
            outcome = DROPPED
        ended = edit | {"outcome": outcome}
        by = edit["by"] if outcome == SUPERSEDED else None
        status = Status(real.status)
        recorded = await self.approvals.record_decision(
            approval.id, status, by, real.reason, edit=ended
        )
        if not recorded:
            await self.approvals.end_edit(approval.id, ended)  # recorded already, by an event
        self.wake_outbox()
