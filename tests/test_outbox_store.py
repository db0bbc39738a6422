"""The outbox table's claim, hand-back and finish, on a real SQLite file (fast: no service)."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from app import clock, schema
from app.db import Store
from app.db.approvals import NewApproval
from app.db.models import Approval, OutboxTask, utcnow
from app.db.outbox import Posted
from app.errors import DatabaseRefused
from app.sandbox.rotor import new_approval_id
from tests.conftest import as_utc

LEASE = timedelta(seconds=30)


@pytest.fixture
def store_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"

    async def migrate() -> None:
        store = Store(url)
        try:
            await schema.upgrade(store)
        finally:
            await store.close()

    asyncio.run(migrate())
    return url


def run(url: str, steps):
    """Run `steps(store)` on a store of its own, closed afterwards."""

    async def go():
        store = Store(url)
        try:
            return await steps(store)
        finally:
            await store.close()

    return asyncio.run(go())


@contextmanager
def later(delta: timedelta):
    """The service's clock moved forward for a while (as the sandbox moves it)."""
    clock.advance(delta)
    try:
        yield
    finally:
        clock.advance(-delta)


async def queue_posts(store: Store, lane: str, n: int, start: int = 0) -> list[str]:
    ids = [f"apv_{lane.lower():0<8}{i + start:024x}" for i in range(n)]
    for approval_id in ids:
        approval = Approval(id=approval_id, job_id="job", queue_name="q", created_at=utcnow())
        assert await store.approvals.record(approval, lane)
    return ids


async def tasks(store: Store) -> list[OutboxTask]:
    from sqlmodel import select

    async with store.session() as s:
        return list((await s.exec(select(OutboxTask).order_by(OutboxTask.id))).all())


async def set_task(store: Store, task_id: int, **values) -> None:
    async with store.session() as s:
        await s.exec(update(OutboxTask).where(OutboxTask.id == task_id).values(**values))


def test_a_claim_takes_the_lane_head_in_order_and_counts_one_try(store_url):
    async def steps(store: Store):
        ids = await queue_posts(store, "C0A", 4)
        await queue_posts(store, "C0B", 1)
        before = utcnow()
        run = await store.outbox.claim_run("C0A", LEASE, 3)
        assert [(t.approval_id, a.id) for t, a in run] == [(i, i) for i in ids[:3]]
        assert [t.attempts for t, _ in run] == [1, 1, 1]  # as returned, and as stored:
        rows = await tasks(store)
        assert [r.attempts for r in rows] == [1, 1, 1, 0, 0]
        for row in rows[:3]:
            assert before + LEASE <= as_utc(row.locked_until) <= utcnow() + LEASE
        assert [r.locked_until for r in rows[3:]] == [None, None]
        # The head is held: the lane gives nothing more, though its fourth task is free.
        assert await store.outbox.claim_run("C0A", LEASE, 3) == []
        return rows

    run(store_url, steps)


def test_a_lane_waits_behind_a_head_not_yet_due_or_held(store_url):
    async def steps(store: Store):
        await queue_posts(store, "C0A", 3)
        first, second, _ = await tasks(store)
        await set_task(store, second.id, not_before=utcnow() + timedelta(minutes=1))
        # Only the run before the task not yet due: the third does not overtake it.
        assert [t.id for t, _ in await store.outbox.claim_run("C0A", LEASE, 5)] == [first.id]
        await store.outbox.finish(first.id)
        assert await store.outbox.claim_run("C0A", LEASE, 5) == []
        with later(timedelta(minutes=2)):
            assert len(await store.outbox.claim_run("C0A", LEASE, 5)) == 2

    run(store_url, steps)


def test_an_expired_lease_is_taken_over_and_counts_again(store_url):
    async def steps(store: Store):
        await queue_posts(store, "C0A", 2)
        assert len(await store.outbox.claim_run("C0A", LEASE, 2)) == 2
        await store.outbox.release([(await tasks(store))[1].id])
        # The free second lists its lane, but the held head keeps the lane closed.
        assert await store.outbox.due_lanes(utcnow()) == ["C0A"]
        assert await store.outbox.claim_run("C0A", LEASE, 2) == []
        await store.outbox.finish((await tasks(store))[1].id)
        with later(LEASE - timedelta(seconds=1)):
            assert await store.outbox.due_lanes(utcnow()) == []  # still held
            assert await store.outbox.claim_run("C0A", LEASE, 2) == []
        with later(LEASE + timedelta(seconds=1)):
            assert await store.outbox.due_lanes(utcnow()) == ["C0A"]
            (taken,) = await store.outbox.claim_run("C0A", LEASE, 2)
            assert taken[0].attempts == 2

    run(store_url, steps)


def test_a_claim_is_renewed_only_while_it_is_still_that_claim(store_url):
    async def steps(store: Store):
        await queue_posts(store, "C0A", 1)
        ((mine, _),) = await store.outbox.claim_run("C0A", LEASE, 1)
        with later(LEASE - timedelta(seconds=1)):
            assert await store.outbox.renew(mine.id, mine.attempts, LEASE)  # extended
        with later(LEASE + timedelta(seconds=1)):
            assert await store.outbox.claim_run("C0A", LEASE, 1) == []  # the renewal holds
        with later(2 * LEASE):
            ((theirs, _),) = await store.outbox.claim_run("C0A", LEASE, 1)  # taken over
            assert not await store.outbox.renew(mine.id, mine.attempts, LEASE)
            assert await store.outbox.renew(theirs.id, theirs.attempts, LEASE)
        await store.outbox.finish(theirs.id)
        assert not await store.outbox.renew(theirs.id, theirs.attempts, LEASE)

    run(store_url, steps)


def test_failed_tasks_are_skipped_and_lanes_are_listed_once(store_url):
    async def steps(store: Store):
        await queue_posts(store, "C0A", 2)
        await queue_posts(store, "C0B", 1, start=10)
        a1, a2, b1 = await tasks(store)
        assert sorted(await store.outbox.due_lanes(utcnow())) == ["C0A", "C0B"]
        await set_task(store, b1.id, failed=True)
        await set_task(store, a1.id, failed=True)
        assert await store.outbox.due_lanes(utcnow()) == ["C0A"]
        assert await store.outbox.claim_run("C0B", LEASE, 5) == []
        assert [t.id for t, _ in await store.outbox.claim_run("C0A", LEASE, 5)] == [a2.id]

    run(store_url, steps)


def test_release_hands_back_without_counting_the_try(store_url):
    async def steps(store: Store):
        await queue_posts(store, "C0A", 3)
        run_ = await store.outbox.claim_run("C0A", LEASE, 3)
        await store.outbox.release([t.id for t, _ in run_[1:]])
        await store.outbox.release([])
        rows = await tasks(store)
        assert [(r.attempts, r.locked_until is None) for r in rows] == [
            (1, False),
            (0, True),
            (0, True),
        ]

    run(store_url, steps)


def test_finish_deletes_the_task_and_records_where_the_post_went(store_url):
    async def steps(store: Store):
        first, second = await queue_posts(store, "C0A", 2)
        t1, t2 = await tasks(store)
        reminder = utcnow() + timedelta(hours=1)
        await store.outbox.finish(t1.id, Posted(first, "C0A", "1.000100", reminder, "U0REQ"))
        assert [t.id for t in await tasks(store)] == [t2.id]
        done = await store.approvals.get(first)
        assert (done.channel, done.ts, done.requester) == ("C0A", "1.000100", "U0REQ")
        assert as_utc(done.next_reminder_at) == reminder
        # Found again after a crash: a reminder already scheduled and a requester already
        # known are kept.
        async with store.session() as s:
            await s.exec(
                update(Approval)
                .where(Approval.id == second)
                .values(next_reminder_at=reminder, requester="U0FIRST")
            )
        await store.outbox.finish(
            t2.id, Posted(second, "C0B", "2.0", reminder + timedelta(hours=5), "U0NEW")
        )
        again = await store.approvals.get(second)
        assert (again.channel, again.ts, again.requester) == ("C0B", "2.0", "U0FIRST")
        assert as_utc(again.next_reminder_at) == reminder
        assert await tasks(store) == []
        untouched = await store.approvals.get(first)
        assert (untouched.channel, untouched.ts) == ("C0A", "1.000100")

    run(store_url, steps)


def test_a_post_finished_after_its_decision_schedules_no_reminder(store_url):
    async def steps(store: Store):
        (approval_id,) = await queue_posts(store, "C0A", 1)
        (task,) = await tasks(store)
        assert await store.approvals.record_decision(approval_id, "approved", "U0CAROL", None)
        posted = Posted(approval_id, "C0A", "3.0", utcnow() + timedelta(hours=1))
        await store.outbox.finish(task.id, posted)
        row = await store.approvals.get(approval_id)
        assert (row.ts, row.next_reminder_at, row.requester) == ("3.0", None, None)

    run(store_url, steps)


# --- approvals arriving together ---------------------------------------------------------------


def arrival(approval_id: str, payload: object = None) -> NewApproval:
    return NewApproval(
        id=approval_id, job_id="job", queue_name="q", payload=payload, created_at=utcnow()
    )


def test_approvals_arriving_together_share_a_transaction(database_url):
    """Concurrent webhooks share one commit (each paid for its own before); every new id is
    recorded once with one post task, and neither a redelivery in the same group nor an id
    known already counts as new."""

    async def steps(store: Store):
        await schema.upgrade(store)
        known = new_approval_id()
        assert await store.approvals.record(arrival(known), "C0")
        commits: list[object] = []
        event.listen(store.engine.sync_engine, "commit", commits.append)
        fresh = [new_approval_id() for _ in range(20)]
        ids = [*fresh, fresh[0], fresh[1], known]
        results = await asyncio.gather(*(store.approvals.record(arrival(i), "C0") for i in ids))
        return known, fresh, results, len(commits)

    known, fresh, results, commits = run(database_url, steps)
    assert results == [True] * 20 + [False] * 3
    assert commits <= 2  # the group, then the redeliveries held back from it
    posts = run(database_url, tasks)
    assert sorted(t.approval_id for t in posts) == sorted([known, *fresh])
    assert {(t.kind, t.lane) for t in posts} == {("post", "C0")}


def test_a_value_refused_in_a_group_fails_only_its_own_approval(database_url):
    async def steps(store: Store):
        await schema.upgrade(store)
        good = [new_approval_id() for _ in range(5)]
        bad = arrival(new_approval_id(), {"n": 10**5000})  # JSON cannot write it
        records = [store.approvals.record(arrival(i, {"n": 1}), "C0") for i in good]
        results = await asyncio.gather(
            *records, store.approvals.record(bad, "C0"), return_exceptions=True
        )
        return good, results

    good, results = run(database_url, steps)
    assert results[:5] == [True] * 5
    assert isinstance(results[5], DatabaseRefused)
    assert sorted(t.approval_id for t in run(database_url, tasks)) == sorted(good)
