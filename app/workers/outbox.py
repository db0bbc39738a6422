"""The outbox's delivery engine: lanes, claims, leases, pacing, and retry or fail. What each
kind of task does in Slack is `workers.deliver`.

Tasks run in lanes (`db.outbox.task` says which); a lane's head run is claimed in the database
before it runs, so a task runs once even with several workers. Failures are retried with
backoff; 429 pauses only that channel.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta

from app import metrics
from app.config import Policy
from app.db import Store
from app.db.models import Approval, OutboxTask, TaskKind, utcnow
from app.db.outbox import Posted
from app.db.pace import ChannelPace
from app.errors import DatabaseUnavailable
from app.retry import backoff
from app.rotor import RotorError, RotorRateLimited, RotorUnavailable
from app.slack.client import SlackRateLimited, SlackRefused, SlackUnavailable
from app.workers.base import Worker
from app.workers.deliver import AMBIGUOUS, RATELIMITED, REFUSED, Delivery, NotYet

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
SCAN_GAP = 0.1
STOP_SECONDS = 4.0  # on shutdown, how long in-flight calls may take to finish
MAX_UNEXPECTED = 5  # tries of a task that fails in an unforeseen way before it is kept as failed


class LeaseLost(Exception):
    """A claimed task's lease ran out and another worker took it over."""


class Pacer:
    """At most `per_second` posts a channel, across every replica; a 429 pauses only that
    channel. The slots live in the database: one round-trip a post."""

    def __init__(self, per_second: float, slots: ChannelPace) -> None:
        self.interval = 1 / per_second
        self._slots = slots

    async def wait(self, channel: str) -> None:
        wait = await self._slots.claim(channel, self.interval)
        if wait > 0:
            await asyncio.sleep(wait)

    async def pause(self, channel: str, seconds: float) -> None:
        await self._slots.push(channel, seconds)


class Outbox(Worker):
    name = "outbox"
    period = POLL_SECONDS

    def __init__(
        self,
        store: Store,
        delivery: Delivery,
        policy: Policy,
        shown: Callable[[], None] = lambda: None,
    ) -> None:
        """`shown` is called when Slack shows something new (Home tabs follow)."""
        super().__init__()
        self.shown = shown
        self.tasks, self.delivery, self.policy = store.outbox, delivery, policy
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
        paced: list[str] = []  # the channel the task posted in, if it did

        async def gate(channel: str) -> None:
            paced.append(channel)
            await self.pacer.wait(channel)
            # A replica that stalled past its lease must not post what another took over.
            for _ in range(2):
                asked = time.monotonic()
                if not await self.tasks.renew(task.id, task.attempts, self.lease):
                    raise LeaseLost(task.id)
                if time.monotonic() - asked < self.fresh:
                    return
                # Stalled (a long pause, a stopped VM) between the renewal and now: renew
                # again, which fails if another worker took the task over in the meantime.
            raise LeaseLost(task.id)  # too slow to trust twice: the task is tried again later

        try:
            posted = await self.delivery.run(task, approval, gate)
        except NotYet as e:
            await self._retry(task, e.delay, str(e))
            return False
        except SlackRateLimited as e:
            if paced:
                await self.pacer.pause(paced[-1], e.delay)
            await self._retry(task, e.delay, RATELIMITED)
            return False
        except SlackUnavailable as e:
            await self._retry(task, None, f"{AMBIGUOUS}: {e}")
            return False
        except SlackRefused as e:
            if e.transient:
                await self._retry(task, None, f"{REFUSED}: {e}")
                return False
            fallback = self.policy.slack.default_channel
            if task.kind == TaskKind.POST and fallback and task.lane != fallback:
                log.error("outbox: post refused, trying %s: %s", fallback, e, extra=extra)
                await self.tasks.reroute(task.id, fallback, f"{REFUSED}: {e}")
                self.wake()
                return False
            await self._fail(task, f"{REFUSED}: {e}")
            return False
        except RotorRateLimited as e:  # an edit's calls to Rotor, past the workspace's limit
            await self._retry(task, e.retry_after, f"rotor: {e}")
            return False
        except RotorUnavailable as e:
            await self._retry(task, None, f"rotor: {e}")
            return False
        except RotorError as e:
            await self._fail(task, f"rotor refused: {e}")
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
                await self._retry(task, None, error)
            return False
        recording.append(asyncio.create_task(self._finish(task, posted)))
        metrics.MESSAGES.labels(kind=task.kind).inc()
        log.info("outbox: %s done", task.kind, extra=extra)
        return True

    async def _retry(self, task: OutboxTask, delay: float | None, reason: str) -> None:
        """Try `task` again after `delay` seconds, or a backoff when None."""
        delay = delay if delay is not None else backoff(task.attempts)
        extra = {"approval_id": task.approval_id, "task": task.kind}
        log.warning("outbox: %s retry in %.1fs: %s", task.kind, delay, reason, extra=extra)
        await self.tasks.retry_later(task.id, utcnow() + timedelta(seconds=delay), reason)

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
