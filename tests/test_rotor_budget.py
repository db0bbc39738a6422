"""The workspace's Rotor rate limit: the shared budget on a real database, the client's 429
handling against the Rotor stand-in over HTTP, and people first in the running service."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from app import schema
from app.db import Store
from app.db.budget import RotorBudget, shape
from app.rotor import RotorClient, RotorConflict, RotorError, RotorRateLimited
from tests.conftest import CAROL, make_policy, posted, wait_until


@pytest.mark.parametrize("per_minute", [10, 60, 300, 1000, 100_000])
def test_no_minute_holds_more_than_the_limit(per_minute):
    # A GCRA allows at most (window + reserve) / interval + 1 calls in any window.
    interval, reserve = shape(per_minute)
    assert (60 + reserve) / interval + 1 == pytest.approx(per_minute)
    assert reserve >= interval  # people always have at least one call in hand


def with_budgets(database_url: str, per_minute: int, check) -> None:
    """Run `check(budget, other)`: two replicas' budgets over one fresh database."""

    async def go() -> None:
        stores = [Store(database_url), Store(database_url)]
        try:
            await schema.upgrade(stores[0])
            await check(*(RotorBudget(s, per_minute) for s in stores))
        finally:
            for store in stores:
                await store.close()

    asyncio.run(go())


def test_people_spend_the_reserve_then_book_and_background_takes_only_free_slots(database_url):
    # 10 a minute: one call every 7.5 s and a reserve of one, wide margins against slow runs.
    async def check(budget: RotorBudget, replica: RotorBudget) -> None:
        assert budget.interval == 7.5 and budget.reserve == 7.5
        assert await budget.book() <= 0  # the reserve...
        assert await replica.book() <= 0  # ...shared by every replica
        assert 5 < await budget.book() <= 7.5  # then the next slot is booked
        # Background work never stands in front: nothing is free for about 15 s more.
        free_in = await replica.take_free()
        assert free_in is not None and 12 < free_in <= 22.5

    with_budgets(database_url, 10, check)


def test_background_takes_one_slot_at_a_time_and_a_429_pushes_everyone(database_url):
    async def check(budget: RotorBudget, replica: RotorBudget) -> None:
        assert await budget.take_free() is None  # free: taken
        assert 5 < (await replica.take_free() or 0) <= 7.5
        await replica.push(60)  # Rotor answered 429, Retry-After: 60
        assert 50 < (await budget.take_free() or 0) <= 60
        assert 45 < await budget.book() <= 60  # people wait it out too

    with_budgets(database_url, 10, check)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_429_is_honoured_for_every_call_and_never_retried_at_once(rotor, tmp_path):
    rotor.requests_per_minute = 2  # the workspace's limit, spent by others too
    approval = rotor.create("ops", {})

    async def go() -> None:
        store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db'}")
        await schema.upgrade(store)
        budget = RotorBudget(store, 100_000)  # this deployment thinks it has plenty
        client = RotorClient(rotor.base_url, rotor.api_key, budget=budget)
        limited = counter("rotor_slack_rotor_rate_limited_total")
        try:
            await client.get_approval(approval["id"])
            await client.get_approval(approval["id"])
            with pytest.raises(RotorRateLimited) as refused:
                await client.approve(approval["id"])
            assert 55 <= refused.value.retry_after <= 60
            assert "rate limit" in str(refused.value) and refused.value.code == "RATE_LIMITED"
            assert counter("rotor_slack_rotor_rate_limited_total") == limited + 1
            # A click now is told at once, without a call; background work waits, calling nothing.
            with pytest.raises(RotorRateLimited):
                await client.get_approval(approval["id"])
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1):
                    await client.background().list_approvals(status="pending")
            assert rotor.rate_limited == 1 and len(rotor.request_times) == 2
            assert rotor.decisions == []
        finally:
            await client.close()
            await store.close()

    asyncio.run(go())


def test_rotor_s_error_shape_is_read_and_cleaned(rotor):
    approval = rotor.create("ops", {})
    rotor.decide_outside(approval["id"], "approved")
    rotor.refuse_decisions = (403, "QUOTA_EXCEEDED", "Monthly quota\n<!channel> " + "x" * 5000)

    async def go() -> None:
        async with RotorClient(rotor.base_url, rotor.api_key) as client:
            with pytest.raises(RotorError) as refused:
                await client.reject(approval["id"], "no")
            assert refused.value.code == "QUOTA_EXCEEDED"
            text = str(refused.value)
            assert text.startswith("Rotor answered HTTP 403: QUOTA_EXCEEDED: Monthly quota <!ch")
            assert "\n" not in text and len(text) < 300
            rotor.refuse_decisions = None
            with pytest.raises(RotorConflict) as conflict:
                await client.approve(approval["id"])
            assert conflict.value.code == "CONFLICT"

    asyncio.run(go())


def test_a_refusal_from_rotor_reaches_the_person_with_its_code(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 5})
    message = posted(slack, approval["id"])
    rotor.refuse_decisions = (403, "QUOTA_EXCEEDED", "Monthly <b>quota</b> exceeded")
    slack.click(CAROL, message, "approve")
    notice = wait_until(lambda: slack.ephemerals_for(CAROL), what="the notice")[0].text
    assert notice == (
        "Could not approve: Rotor answered HTTP 403: QUOTA_EXCEEDED: Monthly &lt;b&gt;quota"
        "&lt;/b&gt; exceeded. Nothing was decided; try again."
    )
    assert rotor.status(approval["id"]) == "pending"
    assert len(rotor.decision_calls) == 1  # a refusal is not retried


def test_a_click_is_never_queued_behind_background_work(start_service, slack, rotor):
    # 10 a minute: background work (a sync every second) takes a slot every 7.5 s.
    rotor.requests_per_minute = 10
    service = start_service(make_policy(sync_every="1s", rotor_rate=10))
    approval = rotor.enqueue("payments", {"amount": 5})
    message = posted(slack, approval["id"])
    wait_until(lambda: rotor.list_calls >= 2, 20, "the sync taking its slots")
    clicked = time.monotonic()
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.decisions, 20, "the decision")
    assert time.monotonic() - clicked < 7.5  # sooner than the next background slot
    assert rotor.rate_limited == 0
    assert 'rotor_budget_waits_total{priority="background"}' in service.get("/metrics").text


def test_polling_every_second_stays_inside_the_budget_and_every_approval_arrives(
    start_service, slack, rotor
):
    rotor.requests_per_minute = 60
    start_service(make_policy(poll="1s", sync_every="1s", rotor_rate=60))
    started = time.monotonic()
    created = []
    for n in range(4):
        created.append(rotor.create("payments", {"amount": n})["id"])  # no webhook: polled
        time.sleep(1)
    for approval_id in created:
        posted(slack, approval_id, timeout=30)
    elapsed = time.monotonic() - started
    interval, _reserve = shape(60)
    # Unpaced, a poll and a sync every second would make about twice as many calls; paced,
    # background work takes one slot an interval and never the people's reserve. (Counted from
    # the test's start: the service's start-up calls before it are paced the same way.)
    calls = [t for t in rotor.request_times if t >= started]
    assert len(calls) <= elapsed / interval + 2
    assert rotor.rate_limited == 0
