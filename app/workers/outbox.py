"""The outbox worker: delivers every queued post, update, reminder and escalation to Slack.

Tasks run in lanes (one per channel for posts, so each channel keeps its order and its own
pace); a lane's head task is claimed in the database before it runs, so a task runs once even
with several workers. Failures are retried with backoff; 429 pauses only that channel.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta

from slack_sdk.web.async_client import AsyncWebClient

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.models import Approval, OutboxTask, Status, TaskKind, utcnow
from app.db.outbox import Posted
from app.errors import DatabaseUnavailable
from app.retry import backoff
from app.slack import client
from app.slack.blocks import approval as blocks
from app.slack.client import RATELIMITED, REFUSED, Pacer, Permanent, Retry
from app.slack.requesters import Requesters
from app.workers.base import Worker

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
SCAN_GAP = 0.1
STOP_SECONDS = 4.0  # on shutdown, how long in-flight calls may take to finish
MAX_UNEXPECTED = 5  # tries of a task that fails in an unforeseen way before it is kept as failed
METADATA_EVENT = "rotor_approval"


class LeaseLost(Exception):
    """A claimed task's lease ran out and another worker took it over."""


class Outbox(Worker):
    name = "outbox"
    period = POLL_SECONDS

    def __init__(
        self,
        store: Store,
        slack: AsyncWebClient,
        policy: Policy,
        requesters: Requesters,
        shown: Callable[[], None] = lambda: None,
    ) -> None:
        """`shown` is called when Slack shows something new (Home tabs follow)."""
        super().__init__()
        self.shown = shown
        self.tasks, self.votes, self.slack, self.policy = store.outbox, store.votes, slack, policy
        self.requesters = requesters
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Task] = {}
        rate = policy.slack.posts_per_second
        self.pacer = Pacer(rate, store.pace)
        # A lane claims what its pace lets it post in about two seconds, at most 20 tasks; a
        # claimed task is someone else's to retry once its lease runs out.
        self.batch = max(1, min(20, int(rate * 2)))
        self.lease = timedelta(seconds=policy.slack.timeout.total_seconds() + 5 + self.batch / rate)
        # A renewal that comes back later than this may be stale: its lease can have run out
        # and the task been taken over since the database granted it.
        self.fresh = (self.lease - policy.slack.timeout).total_seconds() / 2

    def wake(self) -> None:
        self._wake.set()

    async def round(self) -> None:
        self._wake.clear()
        for lane in await self.tasks.due_lanes(utcnow()):
            if lane not in self._lanes:
                self._lanes[lane] = asyncio.create_task(self._drain(lane))

    def failed(self, error: Exception) -> None:
        log.exception("outbox: could not read due work", exc_info=error)

    async def pause(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
        # A burst of webhooks wakes this often; one scan per SCAN_GAP serves them all.
        await asyncio.sleep(SCAN_GAP)

    async def stop(self) -> None:
        """Take no new task; give the ones in flight a few seconds to finish."""
        self.stopping = True
        self.wake()
        lanes = list(self._lanes.values())
        if lanes:
            _done, late = await asyncio.wait(lanes, timeout=STOP_SECONDS)
            for task in late:
                task.cancel()  # its lease runs out and another worker takes it over
            await asyncio.gather(*late, return_exceptions=True)

    async def _drain(self, lane: str) -> None:
        try:
            while not self.stopping and (
                run := await self.tasks.claim_run(lane, self.lease, self.batch)
            ):
                # Each done task is recorded in the background while the next one goes out;
                # all are recorded before the lane claims again.
                recording: list[asyncio.Task] = []
                lost = False
                for done, (task, approval) in enumerate(run):
                    if self.stopping:
                        await self.tasks.release([t.id for t, _ in run[done:]])
                        break
                    try:
                        ran = await self._run(task, approval, recording)
                    except LeaseLost:
                        # Another worker holds the lane now: leave the rest of the run to it.
                        log.warning("outbox: lease lost, lane %s left to its new holder", lane)
                        lost = True
                        break
                    if not ran:
                        # It will be retried: the rest of the run must wait behind it.
                        await self.tasks.release([t.id for t, _ in run[done + 1 :]])
                        break
                await asyncio.gather(*recording)
                if lost:
                    return
        except DatabaseUnavailable as e:
            self.database_lost(e)  # the lane runs again once the database answers
        except Exception:
            log.exception("outbox: lane %s stopped", lane)
        finally:
            self._lanes.pop(lane, None)

    async def _run(
        self, task: OutboxTask, approval: Approval, recording: list[asyncio.Task]
    ) -> bool:
        """Perform one task; True when it is done with (its record appended to `recording`)."""
        extra = {"approval_id": task.approval_id, "task": task.kind}
        perform = {
            TaskKind.POST: self._post,
            TaskKind.UPDATE: self._update,
            TaskKind.REMIND: self._remind,
            TaskKind.ESCALATE: self._escalate,
            TaskKind.NOTIFY: self._notify,
        }[task.kind]
        try:
            posted = await perform(task, approval)
        except Retry as e:
            delay = e.delay if e.delay is not None else backoff(task.attempts)
            log.warning("outbox: %s retry in %.1fs: %s", task.kind, delay, e, extra=extra)
            await self.tasks.retry_later(task.id, utcnow() + timedelta(seconds=delay), e.reason)
            return False
        except Permanent as e:
            fallback = self.policy.slack.default_channel
            if task.kind == TaskKind.POST and task.lane != fallback:
                log.error("outbox: post refused, trying %s: %s", fallback, e, extra=extra)
                await self.tasks.reroute(task.id, fallback, str(e))
                self.wake()
                return False
            await self._fail(task, str(e))
            return False
        except (DatabaseUnavailable, LeaseLost):
            raise  # the lane stops; its lease runs out and the task is tried again
        except Exception as e:
            # A bug, or a payload nothing foresaw: it must not hold up the lane behind it.
            error = f"unexpected: {type(e).__name__}: {e}"[:500]
            if task.attempts >= MAX_UNEXPECTED:
                log.exception("outbox: %s failed", task.kind, extra=extra)
                await self._fail(task, error)
            else:
                delay = backoff(task.attempts)
                log.warning("outbox: %s retry in %.1fs: %s", task.kind, delay, error, extra=extra)
                await self.tasks.retry_later(task.id, utcnow() + timedelta(seconds=delay), error)
            return False
        recording.append(asyncio.create_task(self._finish(task, posted)))
        metrics.MESSAGES.labels(kind=task.kind).inc()
        log.info("outbox: %s done", task.kind, extra=extra)
        return True

    async def _finish(self, task: OutboxTask, posted: Posted | None) -> None:
        """Record a done task; Slack has it already, so wait out a database outage rather
        than let the task run twice (a post would be found again, a reminder would not)."""
        for attempt in itertools.count(1):
            try:
                await self.tasks.finish(task.id, posted)
                return self.shown()
            except DatabaseUnavailable as e:
                if self.stopping:
                    raise  # the lease runs out; the post is found again by its metadata
                self.database_lost(e)
                await asyncio.sleep(backoff(attempt, base=0.5, cap=10.0))

    async def _fail(self, task: OutboxTask, error: str) -> None:
        """Keep the task as failed (counted; `rotor-slack retry-failed` puts it back in line)."""
        log.error(
            "outbox: %s kept as failed: %s",
            task.kind,
            error,
            extra={"approval_id": task.approval_id},
        )
        metrics.OUTBOX_FAILURES.inc()
        await self.tasks.fail(task.id, error)

    # --- the four kinds of task -----------------------------------------------------------

    async def _post(self, task: OutboxTask, approval: Approval) -> Posted | None:
        channel = task.lane
        if approval.ts is not None:
            return None  # posted already
        if approval.requester is None:
            approval.requester = await self._resolve_requester(approval)
        if task.attempts > 1 and not (task.last_error or "").startswith((RATELIMITED, REFUSED)):
            # An earlier try may have posted and died before recording it: look before posting.
            found = await self._find_message(channel, approval.id)
            if found:
                return self._posted(approval, channel, found)
        message = await self._render(approval, channel)
        response = await self._paced(
            task,
            channel,
            self.slack.chat_postMessage,
            channel=channel,
            text=message.text,
            blocks=message.blocks_json(),
            metadata={"event_type": METADATA_EVENT, "event_payload": {"approval_id": approval.id}},
            unfurl_links=False,
            unfurl_media=False,
        )
        return self._posted(approval, response["channel"], response["ts"])

    async def _resolve_requester(self, approval: Approval) -> str | None:
        path = self.policy.requester_path(approval.queue_name)
        requester = await self.requesters.resolve(approval.payload, path)
        if path and requester is None:
            log.info("requester not resolved from %s", path, extra={"approval_id": approval.id})
        return requester

    async def _quorum(self, approval: Approval) -> blocks.Quorum:
        required = self.policy.required_approvals(approval.queue_name)
        voters = await self.votes.voters(approval.id) if required > 1 else []
        return blocks.Quorum(required, voters)

    async def _render(self, approval: Approval, channel: str) -> blocks.Message:
        routed = self.policy.channel_for(approval.queue_name)
        return blocks.approval_message(
            approval,
            meant_for=routed if channel != routed else None,
            queue=self.policy.queue(approval.queue_name),
            quorum=await self._quorum(approval),
        )

    def _posted(self, approval: Approval, channel: str, ts: str) -> Posted:
        first = max(approval.created_at + self.policy.reminders.after, utcnow())
        return Posted(approval.id, channel, ts, first, approval.requester)

    async def _find_message(self, channel: str, approval_id: str) -> str | None:
        response = await client.call(
            self.slack.conversations_history,
            channel=channel,
            include_all_metadata=True,
            limit=200,
        )
        for message in response.get("messages", []):
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if (
                meta.get("event_type") == METADATA_EVENT
                and payload.get("approval_id") == approval_id
            ):
                return message["ts"]
        return None

    async def _update(self, task: OutboxTask, approval: Approval) -> None:
        if approval.ts is None:
            # Not posted yet: the post shows the current state, or this runs again after it.
            raise Retry("waiting for the post", 1.0)
        message = await self._render(approval, approval.channel)
        await client.call(
            self.slack.chat_update,
            channel=approval.channel,
            ts=approval.ts,
            text=message.text,
            blocks=message.blocks_json(),
        )

    async def _remind(self, task: OutboxTask, approval: Approval) -> None:
        if approval.status != Status.PENDING:
            return  # decided since it was queued
        approvers = self.policy.approvers_for(approval.queue_name)
        text = blocks.reminder_text(
            approval,
            approvers,
            utcnow(),
            self.policy.queue(approval.queue_name),
            await self._quorum(approval),
        )
        await self._paced(
            task,
            approval.channel,
            self.slack.chat_postMessage,
            channel=approval.channel,
            thread_ts=approval.ts,
            text=text,
        )

    async def _escalate(self, task: OutboxTask, approval: Approval) -> None:
        if approval.status != Status.PENDING:
            return
        text = blocks.escalation_text(
            approval,
            await self._permalink(approval),
            utcnow(),
            self.policy.queue(approval.queue_name),
            self.policy.approvers_for(approval.queue_name),
            await self._quorum(approval),
        )
        await self._paced(
            task, task.lane, self.slack.chat_postMessage, channel=task.lane, text=text
        )

    async def _permalink(self, approval: Approval) -> str | None:
        """A link to the approval's message; None if there is none or Slack will not give it
        (an escalation or a DM matters more than its link)."""
        if not (approval.channel and approval.ts):
            return None
        try:
            found = await client.call(
                self.slack.chat_getPermalink, channel=approval.channel, message_ts=approval.ts
            )
        except Permanent as e:
            log.warning("outbox: no permalink: %s", e, extra={"approval_id": approval.id})
            return None
        return found.get("permalink")

    async def _notify(self, task: OutboxTask, approval: Approval) -> None:
        """Tell the requester how their approval ended (a DM: the app's Messages tab)."""
        link = await self._permalink(approval)
        text = blocks.requester_text(approval, (await self._quorum(approval)).voters, link)
        await self._paced(
            task, task.lane, self.slack.chat_postMessage, channel=task.lane, text=text
        )

    async def _paced(self, task: OutboxTask, channel: str, method, /, **kwargs):
        """chat.postMessage at the pace of `channel`, if `task` is still ours when its slot
        comes: a replica that stalled past its lease must not post what another took over."""

        async def if_still_ours(**arguments):
            for _ in range(2):
                asked = time.monotonic()
                if not await self.tasks.renew(task.id, task.attempts, self.lease):
                    raise LeaseLost(task.id)
                if time.monotonic() - asked < self.fresh:
                    return await method(**arguments)
                # Stalled (a long pause, a stopped VM) between the renewal and now: renew again,
                # which fails if another worker took the task over in the meantime.
            raise LeaseLost(task.id)  # too slow to trust twice: the task is tried again later

        return await client.call(if_still_ours, pacer=self.pacer, paced_channel=channel, **kwargs)
