"""What each kind of outbox task does in Slack: one function a kind, in `Delivery.KINDS`.

The delivery engine (`workers.outbox`) claims, paces, retries and records; these only render
and call Slack. A function that posts in a channel first passes its `Gate` (the channel's pace,
then a check that the task is still this worker's), and raises `app.slack.client` errors,
or `NotYet` for a task that must wait for another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.config import Policy, QueueRules
from app.db import Store
from app.db.models import Approval, OutboxTask, Status, TaskKind, utcnow
from app.db.outbox import Posted
from app.edits import Editor
from app.slack.blocks import approval as blocks
from app.slack.blocks.edits import EditLinks
from app.slack.blocks.parts import Quorum
from app.slack.client import SlackClient, SlackRefused
from app.slack.requesters import Requesters

log = logging.getLogger(__name__)

METADATA_EVENT = "rotor_approval"
# How a try ended, at the start of the task's last error: after these, Slack certainly did
# nothing; after any other failure (timeout, dropped connection, 5xx) a post may be there.
RATELIMITED, REFUSED, AMBIGUOUS = "ratelimited", "refused", "ambiguous"

Gate = Callable[[str], Awaitable[None]]  # waited on before posting in a channel
WAIT_FOR_CORRECTED = 10  # tries of an original's update that wait for its corrected job's post


class NotYet(Exception):
    """The task must wait (for another task); try again after `delay` seconds."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class Delivery:
    def __init__(
        self,
        slack: SlackClient,
        policy: Policy,
        store: Store,
        requesters: Requesters,
        editor: Editor,
    ) -> None:
        self.slack, self.policy, self.requesters, self.editor = slack, policy, requesters, editor
        self.votes, self.approvals = store.votes, store.approvals
        self.KINDS: dict[TaskKind, Callable[..., Awaitable[Posted | None]]] = {
            TaskKind.POST: self.post,
            TaskKind.UPDATE: self.update,
            TaskKind.REMIND: self.remind,
            TaskKind.ESCALATE: self.escalate,
            TaskKind.NOTIFY: self.notify,
            TaskKind.EDIT: self.edit,
        }

    async def run(self, task: OutboxTask, approval: Approval, gate: Gate) -> Posted | None:
        """Do `task`; what a post should record (where the message is), else None."""
        return await self.KINDS[task.kind](task, approval, gate)

    async def post(self, task: OutboxTask, approval: Approval, gate: Gate) -> Posted | None:
        channel = task.lane
        if approval.ts is not None:
            return None  # posted already
        if approval.requester is None:
            approval.requester = await self._requester(approval)
        if task.attempts > 1 and not (task.last_error or "").startswith((RATELIMITED, REFUSED)):
            # An earlier try may have posted and died before recording it: look before posting.
            found = await self.slack.find_posted(
                channel, METADATA_EVENT, "approval_id", approval.id
            )
            if found:
                return self._posted(approval, channel, found)
        message = await self._message(approval, channel, task)
        await gate(channel)
        where, ts = await self.slack.post(
            channel,
            message.text,
            blocks=message.blocks_json(),
            metadata={"event_type": METADATA_EVENT, "event_payload": {"approval_id": approval.id}},
        )
        return self._posted(approval, where, ts)

    async def update(self, task: OutboxTask, approval: Approval, gate: Gate) -> None:
        if approval.ts is None or approval.channel is None:
            # Not posted yet: the post shows the current state, or this runs again after it.
            raise NotYet("waiting for the post", 1.0)
        message = await self._message(approval, approval.channel, task)
        await self.slack.update(approval.channel, approval.ts, message.text, message.blocks_json())

    async def remind(self, task: OutboxTask, approval: Approval, gate: Gate) -> None:
        if approval.status != Status.PENDING or approval.channel is None:
            return  # decided since it was queued
        rules = self._rules(approval)
        text = blocks.reminder_text(approval, rules, utcnow(), await self._quorum(approval))
        await gate(approval.channel)
        await self.slack.post(approval.channel, text, thread_ts=approval.ts)

    async def escalate(self, task: OutboxTask, approval: Approval, gate: Gate) -> None:
        if approval.status != Status.PENDING:
            return
        rules = self._rules(approval)
        link = await self._permalink(approval)
        text = blocks.escalation_text(approval, rules, link, utcnow(), await self._quorum(approval))
        await gate(task.lane)
        await self.slack.post(task.lane, text)

    async def edit(self, task: OutboxTask, approval: Approval, gate: Gate) -> None:
        """Carry out an approver's correction in Rotor (app.edits); Rotor errors are retried."""
        await self.editor.finish(approval)

    async def notify(self, task: OutboxTask, approval: Approval, gate: Gate) -> None:
        """Tell the requester how their approval ended (a DM: the app's Messages tab)."""
        if approval.ts is None:
            # Decided while being posted: the post records who asked, and the link.
            raise NotYet("waiting for the post", 1.0)
        requester = approval.requester
        if requester is None or requester == approval.decided_by:
            return
        link = await self._permalink(approval)
        text = blocks.requester_text(approval, (await self._quorum(approval)).voters, link)
        await gate(requester)
        await self.slack.post(requester, text)

    # --- what the kinds share ----------------------------------------------------------

    def _rules(self, approval: Approval) -> QueueRules:
        return self.policy.rules_of(approval.queue_name, approval.rules)

    async def _requester(self, approval: Approval) -> str | None:
        path = self._rules(approval).requester
        requester = await self.requesters.resolve(approval.payload, path)
        if path and requester is None:
            log.info("requester not resolved from %s", path, extra={"approval_id": approval.id})
        return requester

    async def _quorum(self, approval: Approval) -> Quorum:
        required = self._rules(approval).required_approvals
        voters = await self.votes.voters(approval.id) if required > 1 else []
        return Quorum(required, voters)

    async def _message(self, approval: Approval, channel: str, task: OutboxTask) -> blocks.Message:
        rules = self._rules(approval)
        # A bounded walk of the payload, but off the event loop all the same (clicks first).
        return await asyncio.to_thread(
            blocks.approval_message,
            approval,
            rules,
            meant_for=rules.channel if channel != rules.channel else None,
            quorum=await self._quorum(approval),
            links=await self._edit_links(approval, task),
        )

    async def _edit_links(self, approval: Approval, task: OutboxTask) -> EditLinks:
        """The other message of an edit: the original's, or the corrected job's once posted
        (waited for a while: its webhook comes within seconds of the enqueue)."""
        edit = approval.edit or {}
        if "from" in edit:
            found = await self.approvals.many([edit["from"]], payloads=False)
            original = found.get(edit["from"])
            return EditLinks(original=await self._permalink(original) if original else None)
        if edit.get("outcome") != "superseded":
            return EditLinks()
        corrected = await self.approvals.by_job(edit["job"])
        if corrected is not None and corrected.ts is None and task.attempts < WAIT_FOR_CORRECTED:
            raise NotYet("waiting for the corrected job's message", 2.0)
        return EditLinks(corrected=await self._permalink(corrected) if corrected else None)

    def _posted(self, approval: Approval, channel: str, ts: str) -> Posted:
        first = max(approval.created_at + self.policy.reminders.after, utcnow())
        return Posted(approval.id, channel, ts, first, approval.requester)

    async def _permalink(self, approval: Approval) -> str | None:
        """A link to the approval's message; None if there is none or Slack will not give it
        (an escalation or a DM matters more than its link)."""
        if not (approval.channel and approval.ts):
            return None
        try:
            return await self.slack.permalink(approval.channel, approval.ts)
        except SlackRefused as e:
            if e.transient:
                raise
            log.warning("outbox: no permalink: %s", e, extra={"approval_id": approval.id})
            return None
