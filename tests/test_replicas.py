"""Two `rotor-slack serve` replicas on one database and one Slack: work is shared, never doubled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from app.db.models import utcnow
from app.workers.outbox import LeaseLost
from tests.conftest import (
    CAROL,
    OPS,
    PAYMENTS,
    as_utc,
    drained,
    make_policy,
    posted,
    stored,
    wait_until,
)
from tests.test_faults import assert_each_posted_once

QUEUES = ["payments", "ops", "general", "escalations"]
# A lane claims at most 20 tasks at a time (app.workers.outbox: two seconds at 50 posts a second):
# with this many approvals over the three channels (C0FINANCE, C0OPS, and C0APPROVALS for the two
# queues without a channel) every lane is claimed run after run, by both replicas in turn.
MANY = 150


@pytest.fixture
def replicas(start_service, slack):
    slack.posts_per_second, slack.burst = 200, 10

    def start(after: str = "1h"):
        policy = make_policy(
            timeout="2s", after=after, every="1h", check_every="200ms", queues=PAYMENTS + OPS
        )
        return start_service(policy), start_service(policy)

    return start


def test_redeliveries_across_replicas_post_each_approval_once(replicas, slack, rotor):
    a, b = replicas()
    approvals = [rotor.create(QUEUES[i % 4], {"i": i}) for i in range(MANY)]

    def deliver(indexed):
        i, approval = indexed
        first, second = (a, b) if i % 2 else (b, a)
        codes = [
            rotor.deliver(approval["id"], url=f"{first.url}/rotor/webhook").status_code,
            rotor.deliver(approval["id"], url=f"{second.url}/rotor/webhook").status_code,
        ]
        return sorted(codes)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(deliver, enumerate(approvals)))
    assert all(codes == [200, 202] for codes in results)
    assert_each_posted_once(slack, [x["id"] for x in approvals], a, timeout=120)


def test_clicks_on_both_replicas_make_one_decision(replicas, slack, rotor):
    a, b = replicas()
    rotor.accept_repeats = True  # a second decision would be applied and counted
    rotor.hold_decisions = True  # the winner's call waits at Rotor while the others click
    approval = rotor.create("ops", {})
    rotor.deliver(approval["id"], url=f"{a.url}/rotor/webhook")
    message = wait_until(lambda: slack.find(approval["id"]))[0]
    users = [f"U0CLICK{i}" for i in range(6)]
    replica_of = {u: (a, b)[i % 2] for i, u in enumerate(users)}

    def click(user):
        url = f"{replica_of[user].url}/slack/events"
        return slack.click(user, message, "approve", app_url=url).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(click, users)) == [200] * 6
    told = lambda: [e for u in users for e in slack.ephemerals_for(u)]  # noqa: E731
    wait_until(lambda: len(rotor.decision_calls) > 1 or len(told()) == 5, 15, "five notices")
    assert rotor.decision_calls == [(approval["id"], "approved")]
    (winner,) = set(users) - {e.user for e in told()}
    # The three clicks on the other replica were held off by the claim in the shared database.
    assert {replica_of[e.user] for e in told()} == {a, b}
    for e in told():
        assert e.text == f"<@{winner}> is deciding this approval right now.", e.text
    rotor.hold_decisions = False
    wait_until(lambda: slack.find(approval["id"])[0].edited, 15, "the update")
    assert f"by <@{winner}>" in str(slack.find(approval["id"])[0].blocks)
    assert rotor.decisions == [(approval["id"], "approved")]
    assert len(rotor.decision_calls) == 1


def test_reminders_for_many_approvals_are_sent_once_each(replicas, slack, rotor, database_url):
    a, b = replicas(after="1s")
    ids = []
    # Both replicas sweep every 200 ms while these fall due within a second or two of each other:
    # sweeps overlap on the same rows again and again, and the reminders share the lanes' runs.
    for i in range(60):
        approval = rotor.create(QUEUES[i % 4], {"i": i})
        rotor.deliver(approval["id"], url=f"{(a, b)[i % 2].url}/rotor/webhook")
        ids.append(approval["id"])
    assert_each_posted_once(slack, ids, a)
    messages = [slack.find(x)[0] for x in ids]
    wait_until(lambda: all(slack.replies(m) for m in messages), 30, "a reminder for each")
    # Each row counts one reminder and is next due in an hour, and no reminder task is left:
    # neither replica can send another one now.
    drained(a)
    rows = stored(database_url, *ids)
    assert {r.reminders_sent for r in rows} == {1}
    assert all(as_utc(r.next_reminder_at) > utcnow() + timedelta(minutes=50) for r in rows)
    assert [len(slack.replies(m)) for m in messages] == [1] * len(ids)


def test_a_replica_killed_mid_burst_leaves_its_work_to_the_other(replicas, slack, rotor):
    slack.posts_per_second = 20
    a, b = replicas()
    # At 20 a second Slack's pace keeps the burst going for seconds after the 20th post, when A
    # dies holding claimed runs on every lane: B gets them only once their leases run out.
    ids = [rotor.create(QUEUES[i % 4], {"i": i})["id"] for i in range(MANY)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda x: rotor.deliver(x, url=f"{a.url}/rotor/webhook"), ids))
    wait_until(lambda: slack.count("chat.postMessage") >= 20, 20, "posting to begin")
    a.process.kill()
    a.process.wait()
    assert_each_posted_once(slack, ids, b, timeout=120)
    # The surviving replica still serves clicks.
    slack.app_url = f"{b.url}/slack/events"
    slack.click(CAROL, slack.find(ids[0])[0], "approve")
    wait_until(lambda: rotor.status(ids[0]) == "approved")


def test_a_replica_frozen_mid_work_neither_stalls_the_other_nor_doubles_a_post(
    start_service, slack, rotor, database_url
):
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share PostgreSQL in production; one database is enough here")
    # Posts at 2 a second, so the replica is forever claiming the channel's next slot.
    policy = make_policy(rate=2, timeout="1s", queues=OPS)
    a, b = start_service(policy), start_service(policy)
    ids = [rotor.create("ops", {"i": i})["id"] for i in range(12)]
    for approval_id in ids:
        rotor.deliver(approval_id, url=f"{a.url}/rotor/webhook")
    wait_until(lambda: slack.count("chat.postMessage") >= 2, 20, "posting to begin")
    # A stalls (a long pause, a stopped VM), likely inside a transaction holding row locks, or
    # in the middle of a statement: the server ends either after 10 s, and B takes the lane
    # over once A's lease is gone.
    os.kill(a.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: all(slack.find(x) for x in ids), 60, "the other replica to post")
    finally:
        os.kill(a.process.pid, signal.SIGCONT)
    # A wakes in the middle of its run: what B posted is not posted again.
    assert_each_posted_once(slack, ids, a, b)


def test_a_session_stopped_in_the_middle_of_a_statement_is_ended_by_the_others(
    service, slack, rotor, database_url
):
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share PostgreSQL in production; one database is enough here")
    import asyncpg

    async def stop_mid_statement() -> asyncpg.Connection:
        # What a replica paused between asyncpg's prepare and its execute leaves behind: a
        # transaction holding a lock, and a server waiting on the session's next message, which
        # neither idle_in_transaction_session_timeout nor statement_timeout ends.
        dsn = database_url.replace("+asyncpg", "", 1)
        conn = await asyncpg.connect(dsn, server_settings={"application_name": "rotor-slack"})
        await conn.execute("BEGIN; LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        await conn.prepare("SELECT 1")
        return conn

    loop = asyncio.new_event_loop()
    stalled = loop.run_until_complete(stop_mid_statement())
    try:
        approval = rotor.create("payments", {"amount": 5})

        def delivered() -> bool:
            try:
                return rotor.deliver(approval["id"]).status_code in (200, 202)
            except httpx.TimeoutException:
                return False  # Rotor gives up on a slow answer and delivers again

        wait_until(delivered, 40, "the webhook taken (slow, or 503, while the lock is held)")
        posted(slack, approval["id"], timeout=30)
        assert "database: ended session" in service.output()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            loop.run_until_complete(stalled.fetch("SELECT 1"))  # it was ended
    finally:
        loop.run_until_complete(stalled.close(timeout=5))
        loop.close()


# Longer than the outbox trusts a renewal to take: half of what its 8 s lease leaves past the
# call's 1 s timeout (app.workers.outbox).
STALL = 4.0


async def _post_after_a_stalled_renewal(database_url: str, slack) -> tuple[int, int]:
    """One post task run by an outbox whose process stalls just after the database granted its
    renewal; meanwhile the lease runs out and another worker takes the task over. Returns
    (posts to Slack, the task's attempts)."""
    from slack_sdk.web.async_client import AsyncWebClient
    from sqlalchemy import event, update

    from app import schema
    from app.config import parse_policy
    from app.db import Store
    from app.db.models import Approval, OutboxTask, Status
    from app.edits import Editor
    from app.intake import Intake
    from app.rotor import RotorClient
    from app.slack.client import SlackClient
    from app.slack.requesters import Requesters
    from app.workers.deliver import Delivery
    from app.workers.outbox import Outbox

    policy = parse_policy(make_policy(rate=2, timeout="1s", queues=OPS))
    store = Store(database_url)
    web = AsyncWebClient(token=slack.token, base_url=f"{slack.base_url}/api/")
    try:
        await schema.upgrade(store)
        approval = Approval(
            id="apv_" + "5" * 32,
            job_id="job_5",
            queue_name="ops",
            payload={},
            created_at=utcnow(),
            status=Status.PENDING,
            reminders_sent=0,
        )
        await Intake(store, policy, lambda: None).accept(approval)
        client = SlackClient(web)
        unused = Editor(store, RotorClient("http://127.0.0.1:9", "rt_ws_unused"))  # posts only
        outbox = Outbox(store, Delivery(client, policy, store, Requesters(client), unused), policy)
        renewing = []

        @event.listens_for(store.engine.sync_engine, "before_cursor_execute")
        def seen(conn, cursor, statement, *_):
            if statement.startswith("UPDATE outbox SET locked_until") and "attempts =" in statement:
                renewing.append(True)

        @event.listens_for(store.engine.sync_engine.pool, "checkin")
        def stall(*_):
            # The renewal is committed and its connection back in the pool: the process stops
            # here (a long pause, a stopped VM) long enough for its lease to run out, and
            # another worker takes the task over. Blocking stops every task of this loop.
            if renewing == [True]:  # the first renewal only
                renewing.append(False)
                thread = threading.Thread(target=lambda: taken.extend(asyncio.run(take_over())))
                thread.start()
                thread.join()
                time.sleep(STALL)

        async def take_over():
            """Another worker, on a loop and connection of its own, once the lease ran out
            (moved to now: the stall is not made to last the whole lease)."""
            other = Store(database_url)
            try:
                async with other.session() as s:
                    await s.exec(update(OutboxTask).values(locked_until=utcnow()))
                return await other.outbox.claim_run("C0OPS", outbox.lease, 1)
            finally:
                await other.close()

        taken: list = []
        ((task, claimed),) = await outbox.tasks.claim_run("C0OPS", outbox.lease, 1)
        with contextlib.suppress(LeaseLost):
            await outbox._run(task, claimed, [])
        assert len(taken) == 1, "the other worker took the task over"
        async with store.session() as s:
            (row,) = (await s.exec(select(OutboxTask))).all()
        return slack.count("chat.postMessage"), row.attempts
    finally:
        await store.close()


def test_a_renewal_seen_after_a_stall_is_checked_again_before_posting(slack, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share PostgreSQL in production; one database is enough here")
    # Without the check, the stalled worker posts what the other one now holds: a double post.
    posts, attempts = asyncio.run(_post_after_a_stalled_renewal(database_url, slack))
    assert attempts == 2  # the other worker's claim stands
    assert posts == 0  # and this one left the task to it
