"""The outbox worker: delivers every queued post, update, reminder and escalation to Slack.

Tasks run in lanes (one per channel for posts, so each channel keeps its order and its own
pace); a lane's head task is claimed in the database before it runs, so a task runs once even
with several workers. Failures are retried with backoff; 429 pauses only that channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app import metrics
from app.config import Policy
from app.retry import backoff
from app.slack import blocks
from app.store import (
    ESCALATE,
    PENDING,
    POST,
    REMIND,
    UPDATE,
    Approval,
    OutboxTask,
    Posted,
    Store,
    utcnow,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
SCAN_GAP = 0.1
STOP_SECONDS = 4.0  # on shutdown, how long in-flight calls may take to finish
METADATA_EVENT = "rotor_approval"
# Slack refused these calls, so they certainly did nothing; after any other failure
# (timeout, dropped connection, 5xx) the message may have been posted all the same.
RATELIMITED, REFUSED, AMBIGUOUS = "ratelimited", "refused", "ambiguous"
TRANSIENT_SLACK_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class Retry(Exception):
    """Try the task again after `delay` seconds, or after a backoff when None."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


class Permanent(Exception):
    pass


class Outbox:
    def __init__(self, store: Store, slack: AsyncWebClient, policy: Policy) -> None:
        self.store, self.slack, self.policy = store, slack, policy
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Task] = {}
        self._next_post: dict[str, float] = {}  # channel -> monotonic time of its next post
        self._stopping = False
        # A lane claims what its pace lets it post in about two seconds, at most 20 tasks; a
        # claimed task is someone else's to retry once its lease runs out.
        rate = policy.slack.posts_per_second
        self.batch = max(1, min(20, int(rate * 2)))
        self.lease = timedelta(seconds=policy.slack.timeout.total_seconds() + 5 + self.batch / rate)
        self.heartbeat = time.monotonic()
        self.period = POLL_SECONDS

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self.heartbeat = time.monotonic()
            self._wake.clear()
            try:
                for lane in await self.store.due_lanes(utcnow()):
                    if lane not in self._lanes:
                        self._lanes[lane] = asyncio.create_task(self._drain(lane))
            except Exception:
                log.exception("outbox: could not read due work")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            # A burst of webhooks wakes this often; one scan per SCAN_GAP serves them all.
            await asyncio.sleep(SCAN_GAP)

    async def stop(self) -> None:
        """Take no new task; give the ones in flight a few seconds to finish."""
        self._stopping = True
        self.wake()
        lanes = list(self._lanes.values())
        if lanes:
            _done, late = await asyncio.wait(lanes, timeout=STOP_SECONDS)
            for task in late:
                task.cancel()  # its lease runs out and another worker takes it over
            await asyncio.gather(*late, return_exceptions=True)

    async def _drain(self, lane: str) -> None:
        try:
            while not self._stopping and (
                run := await self.store.claim_run(lane, self.lease, self.batch)
            ):
                # Each done task is recorded in the background while the next one goes out;
                # all are recorded before the lane claims again.
                recording: list[asyncio.Task] = []
                for done, (task, approval) in enumerate(run):
                    if self._stopping:
                        await self.store.release([t.id for t, _ in run[done:]])
                        break
                    if not await self._run(task, approval, recording):
                        # It will be retried: the rest of the run must wait behind it.
                        await self.store.release([t.id for t, _ in run[done + 1 :]])
                        break
                await asyncio.gather(*recording)
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
            POST: self._post,
            UPDATE: self._update,
            REMIND: self._remind,
            ESCALATE: self._escalate,
        }[task.kind]
        try:
            posted = await perform(task, approval)
        except Retry as e:
            delay = e.delay if e.delay is not None else backoff(task.attempts)
            log.warning("outbox: %s retry in %.1fs: %s", task.kind, delay, e, extra=extra)
            await self.store.retry_later(task.id, utcnow() + timedelta(seconds=delay), e.reason)
            return False
        except Permanent as e:
            fallback = self.policy.slack.default_channel
            if task.kind == POST and task.lane != fallback:
                log.error("outbox: post refused, trying %s: %s", fallback, e, extra=extra)
                await self.store.reroute(task.id, fallback, str(e))
                self.wake()
                return False
            log.error("outbox: %s failed, kept as failed: %s", task.kind, e, extra=extra)
            metrics.OUTBOX_FAILURES.inc()
            await self.store.fail(task.id, str(e))
            return False
        recording.append(asyncio.create_task(self.store.finish(task.id, posted)))
        metrics.MESSAGES.labels(kind=task.kind).inc()
        log.info("outbox: %s done", task.kind, extra=extra)
        return True

    # --- the four kinds of task -----------------------------------------------------------

    async def _post(self, task: OutboxTask, approval: Approval) -> Posted | None:
        channel = task.lane
        if approval.ts is not None:
            return None  # posted already
        if task.attempts > 1 and not (task.last_error or "").startswith((RATELIMITED, REFUSED)):
            # An earlier try may have posted and died before recording it: look before posting.
            found = await self._find_message(channel, approval.id)
            if found:
                return self._posted(approval, channel, found)
        message = self._render(approval, channel)
        response = await self._call(
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

    def _render(self, approval: Approval, channel: str) -> blocks.Message:
        routed = self.policy.channel_for(approval.queue_name)
        return blocks.approval_message(approval, meant_for=routed if channel != routed else None)

    def _posted(self, approval: Approval, channel: str, ts: str) -> Posted:
        first = max(approval.created_at + self.policy.reminders.after, utcnow())
        return Posted(approval.id, channel, ts, first)

    async def _find_message(self, channel: str, approval_id: str) -> str | None:
        response = await self._call(
            None,
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
        message = self._render(approval, approval.channel)
        await self._call(
            None,
            self.slack.chat_update,
            channel=approval.channel,
            ts=approval.ts,
            text=message.text,
            blocks=message.blocks_json(),
        )

    async def _remind(self, task: OutboxTask, approval: Approval) -> None:
        if approval.status != PENDING:
            return  # decided since it was queued
        approvers = self.policy.approvers_for(approval.queue_name)
        await self._call(
            approval.channel,
            self.slack.chat_postMessage,
            channel=approval.channel,
            thread_ts=approval.ts,
            text=blocks.reminder_text(approval, approvers, utcnow()),
        )

    async def _escalate(self, task: OutboxTask, approval: Approval) -> None:
        if approval.status != PENDING:
            return
        try:
            link = await self._call(
                None, self.slack.chat_getPermalink, channel=approval.channel, message_ts=approval.ts
            )
            permalink = link.get("permalink")
        except Permanent as e:
            # The escalation matters more than its link: name the approval instead.
            log.warning("outbox: no permalink: %s", e, extra={"approval_id": approval.id})
            permalink = None
        text = blocks.escalation_text(approval, permalink, utcnow())
        await self._call(task.lane, self.slack.chat_postMessage, channel=task.lane, text=text)

    # --- calling Slack --------------------------------------------------------------------

    async def _pace(self, channel: str) -> None:
        """At most one post per interval in a channel."""
        wait = self._next_post.get(channel, 0.0) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next_post[channel] = time.monotonic() + 1 / self.policy.slack.posts_per_second

    async def _call(self, paced_channel: str | None, method, **kwargs):
        """Call a Web API method; `paced_channel` is set for chat.postMessage's per-channel pace."""
        if paced_channel is not None:
            await self._pace(paced_channel)
        try:
            return await method(**kwargs)
        except SlackApiError as e:
            error = e.response.get("error") or f"http_{e.response.status_code}"
            metrics.SLACK_ERRORS.labels(error=error).inc()
            if e.response.status_code == 429 or error == "ratelimited":
                delay = float(e.response.headers.get("Retry-After", 1))
                if paced_channel is not None:
                    self._next_post[paced_channel] = time.monotonic() + delay
                raise Retry(RATELIMITED, delay) from None
            if e.response.status_code >= 500:
                raise Retry(f"{AMBIGUOUS}: {error}") from None
            if error in TRANSIENT_SLACK_ERRORS:
                raise Retry(f"{REFUSED}: {error}") from None
            raise Permanent(f"{REFUSED}: {error}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            metrics.SLACK_ERRORS.labels(error="unreachable").inc()
            raise Retry(f"{AMBIGUOUS}: {type(e).__name__}") from None
