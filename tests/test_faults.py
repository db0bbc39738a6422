"""Nothing lost, nothing doubled: the real service under injected faults, crashes and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from app.sandbox.slack_objects import Fault
from tests.conftest import (
    CAROL,
    OPS,
    PAYMENTS,
    drained,
    make_policy,
    metric,
    outbox_rows,
    posted,
    wait_until,
)

QUEUES = ["payments", "ops", "general"]  # C0FINANCE, C0OPS, C0APPROVALS


def policy(rate: float = 50) -> str:
    # A short Slack timeout, so leases of crashed workers run out in seconds.
    return make_policy(rate=rate, timeout="2s", queues=PAYMENTS + OPS)


def assert_each_posted_once(slack, approval_ids, *services, timeout=60.0):
    """Each posted exactly once, checked once the outbox (as `services` see it) is empty: after
    that no task is left to post again (a duplicate comes from a task retried or taken over)."""
    wait_until(lambda: all(slack.find(a) for a in approval_ids), timeout, "every approval posted")
    drained(*services, timeout=timeout)
    counts = {a: len(slack.find(a)) for a in approval_ids}
    assert set(counts.values()) == {1}, {a: n for a, n in counts.items() if n != 1}


def assert_in_arrival_order(slack, approval_ids):
    """Per channel, messages appear in the order the approvals arrived."""
    channel_of = {a: slack.find(a)[0].channel for a in approval_ids}
    for channel in set(channel_of.values()):
        wanted = [a for a in approval_ids if channel_of[a] == channel]
        got = [
            m.metadata["event_payload"]["approval_id"]
            for m in slack.channel_messages(channel)
            if m.metadata and m.metadata["event_payload"]["approval_id"] in channel_of
        ]
        assert got == wanted, channel


def test_kill_9_mid_burst_then_restart(start_service, slack, rotor):
    # Slow enough that the kill always lands mid-burst, however fast the webhooks arrive.
    slack.posts_per_second = 4
    first = start_service(policy(rate=4))
    ids = [rotor.enqueue(QUEUES[i % 3], {"i": i})["id"] for i in range(90)]
    wait_until(lambda: slack.count("chat.postMessage") >= 15, 20, "posting to begin")
    first.process.kill()  # SIGKILL: no shutdown of any kind
    first.process.wait()
    assert sum(1 for a in ids if slack.find(a)) < len(ids)
    second = start_service(policy(rate=4))
    assert_each_posted_once(slack, ids, second)
    assert_in_arrival_order(slack, ids)


def test_crash_after_slack_answered_before_the_write(start_service, slack, rotor):
    first = start_service(policy())
    # Slack posts the message but the answer never comes back before the crash.
    slack.fail(Fault("chat.postMessage", after_effect=True, delay=30))
    approval = rotor.enqueue("ops", {"n": 1})
    wait_until(lambda: slack.find(approval["id"]), 10, "the message to exist in Slack")
    first.process.kill()
    first.process.wait()
    slack.heal()
    start_service(policy())
    # The restarted service finds the message by its metadata instead of posting again…
    wait_until(lambda: slack.count("conversations.history") >= 1, 20, "the lookup")
    # …and knows its ts: a click updates that very message.
    message = slack.find(approval["id"])[0]
    slack.click(CAROL, message, "approve")
    wait_until(lambda: slack.find(approval["id"])[0].edited, 10, "the message update")
    assert len(slack.find(approval["id"])) == 1


def test_flaky_slack_posts_everything_once(start_service, slack, rotor):
    service = start_service(policy())
    slack.fail(Fault("chat.postMessage", count=None, share=0.15, status=500, after_effect=True))
    slack.fail(Fault("chat.postMessage", count=None, share=0.15, status=503))
    slack.fail(
        Fault(
            "chat.postMessage",
            count=None,
            share=0.1,
            status=429,
            error="ratelimited",
            retry_after=1,
        )
    )
    slack.fail(Fault("chat.postMessage", count=None, share=0.05, delay=3, after_effect=True))
    ids = [rotor.enqueue(QUEUES[i % 3], {"i": i})["id"] for i in range(24)]
    assert_each_posted_once(slack, ids, service, timeout=90)
    assert_in_arrival_order(slack, ids)


def test_429_storm_on_one_channel_leaves_the_others_flowing(service, slack, rotor):
    storm = slack.fail(
        Fault(
            "chat.postMessage",
            count=None,
            status=429,
            error="ratelimited",
            retry_after=1,
            channel="C0FINANCE",
        )
    )
    finance = [rotor.enqueue("payments", {"i": i})["id"] for i in range(5)]
    others = [rotor.enqueue("ops", {"i": i})["id"] for i in range(5)]
    wait_until(lambda: all(slack.find(a) for a in others), 5, "the other channel's posts")
    assert not any(slack.find(a) for a in finance)
    # The held posts show in the outbox metrics.
    wait_until(lambda: metric(service, "rotor_slack_outbox_oldest_seconds") >= 1, 10, "age")
    assert metric(service, "rotor_slack_outbox_depth") == 5
    assert 'rotor_slack_slack_errors_total{error="ratelimited"}' in service.get("/metrics").text
    slack.faults.remove(storm)
    assert_each_posted_once(slack, finance + others, service, timeout=15)
    assert_in_arrival_order(slack, finance)


def test_rotor_5xx_during_a_click_is_retried(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    rotor.fail_next = 2  # the client retries twice
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    wait_until(lambda: slack.find(approval["id"])[0].edited)
    assert rotor.decisions == [(approval["id"], "approved")]
    assert rotor.decision_calls == [(approval["id"], "approved")] * 3


def test_slack_down_during_the_update_catches_up_later(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    slack.fail(Fault("chat.update", count=None, status=503))
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    wait_until(lambda: slack.count("chat.update") >= 2, 10, "update retries")
    assert not slack.find(approval["id"])[0].edited
    slack.heal()
    updated = wait_until(lambda: (m := slack.find(approval["id"])[0]).edited and m, 20)
    assert updated.text.startswith("Approved")
    assert rotor.decisions == [(approval["id"], "approved")]


def test_refused_channel_falls_back_to_the_default_with_a_note(
    start_service, slack, rotor, tmp_path
):
    service = start_service(policy())
    slack.absent_from = {"C0FINANCE"}
    approval = rotor.enqueue("payments", {})
    message = posted(slack, approval["id"])
    assert message.channel == "C0APPROVALS"
    note = next(b for b in message.blocks if b["block_id"] == "misrouted")
    assert "<#C0FINANCE>" in note["elements"][0]["text"]

    # Both refused: kept as failed, counted, and retried by `rotor-slack retry-failed`.
    slack.absent_from = {"C0FINANCE", "C0APPROVALS"}
    stuck = rotor.enqueue("payments", {"n": 2})
    wait_until(
        lambda: "rotor_slack_outbox_failed 1.0" in service.get("/metrics").text, 15, "a failure"
    )
    assert "approval_id=" + stuck["id"] in service.output()
    slack.absent_from = set()
    assert "1 failed task(s) queued again" in retry_failed(service, tmp_path)
    assert posted(slack, stuck["id"]).channel == "C0FINANCE"


def test_sigterm_finishes_work_in_flight(start_service, slack, rotor):
    first = start_service(policy())
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    rotor.latency = 1.5
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.decision_calls, what="the decision to wait on Rotor")
    started = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises SIGTERM once it has shut down cleanly.
    assert first.process.wait(15) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 10
    assert "rotor-slack stopped" in first.output()
    assert rotor.status(approval["id"]) == "approved"
    rotor.latency = 0
    start_service(policy())
    updated = wait_until(lambda: (m := slack.find(approval["id"])[0]).edited and m, 15)
    assert f"by <@{CAROL}>" in str(updated.blocks)  # recorded as Carol's, not "outside Slack"


def retry_failed(service, tmp_path) -> str:
    # It touches only the database: no Slack or Rotor secret is needed.
    secrets = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "ROTOR_API_KEY", "ROTOR_WEBHOOK_SECRET")
    result = subprocess.run(
        [sys.executable, "-m", "app", "retry-failed"],
        env={k: v for k, v in service.env.items() if k not in secrets},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_refused_reminder_escalation_and_update_are_kept_and_retried(
    start_service, slack, rotor, tmp_path
):
    service = start_service(
        make_policy(after="1s", every="1s", escalate_after=1, check_every="200ms", timeout="2s")
    )
    slack.fail(
        Fault("chat.postMessage", count=None, status=200, error="is_archived", threaded=True)
    )
    slack.fail(
        Fault("chat.postMessage", count=None, status=200, error="is_archived", channel="C0ESCALATE")
    )
    approval = rotor.enqueue("payments", {"amount": 9})
    message = posted(slack, approval["id"])
    wait_until(lambda: metric(service, "rotor_slack_outbox_failed") == 2, 20, "two failures")
    assert metric(service, "rotor_slack_outbox_failures_total") == 2
    assert 'rotor_slack_slack_errors_total{error="is_archived"}' in service.get("/metrics").text
    assert slack.replies(message) == [] and slack.channel_messages("C0ESCALATE") == []
    slack.heal()
    assert "2 failed task(s) queued again" in retry_failed(service, tmp_path)
    wait_until(lambda: slack.replies(message), 10, "the reminder")
    wait_until(lambda: slack.channel_messages("C0ESCALATE"), 10, "the escalation")
    drained(service)
    assert metric(service, "rotor_slack_outbox_failed") == 0

    slack.fail(Fault("chat.update", count=None, status=200, error="cant_update_message"))
    slack.click(CAROL, message, "approve")
    wait_until(lambda: metric(service, "rotor_slack_outbox_failed") == 1, 20, "the failed update")
    assert not slack.find(approval["id"])[0].edited
    slack.heal()
    assert "1 failed task(s) queued again" in retry_failed(service, tmp_path)
    wait_until(lambda: slack.find(approval["id"])[0].edited, 10, "the update")
    assert len(slack.replies(message)) == 1 and len(slack.channel_messages("C0ESCALATE")) == 1


def test_shutdown_hands_back_the_tasks_it_did_not_run(start_service, slack, rotor, database_url):
    first = start_service(policy(rate=4))  # a lane claims 8 posts at a time, one each 250 ms
    ids = [rotor.enqueue("ops", {"i": i})["id"] for i in range(8)]
    wait_until(lambda: slack.count("chat.postMessage") >= 2, 10, "posting to begin")
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(15)
    left = outbox_rows(database_url)
    assert 0 < len(left) < len(ids)
    # Handed back: free to take at once, and their claim does not count as a try.
    assert [(t.locked_until, t.attempts) for t in left] == [(None, 0)] * len(left)
    assert sum(1 for a in ids if slack.find(a)) == len(ids) - len(left)
    second = start_service(policy(rate=4))
    assert_each_posted_once(slack, ids, second)
    assert_in_arrival_order(slack, ids)


def test_readyz_says_503_while_the_database_does_not_answer(service, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("the lock is taken on the SQLite file; PostgreSQL answers the same way")
    path = database_url.split("///", 1)[1]
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # every write transaction of the service now waits
        response = service.get("/readyz")
        assert response.status_code == 503
        problems = response.json()["problems"]
        assert response.json()["ready"] is False and len(problems) == 1
        assert problems[0].startswith("database: ")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_until(lambda: service.get("/readyz").status_code == 200, 40, "ready again")


STATEMENT_TIMEOUT = 10.0  # app.db.engine.STATEMENT_TIMEOUT_MS


def test_readyz_names_a_worker_held_up_by_a_table_lock(service, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite ends every wait at its busy timeout: only PostgreSQL waits on a lock")
    import asyncpg

    dsn = database_url.replace("+asyncpg", "", 1)
    loop = asyncio.new_event_loop()
    locker = loop.run_until_complete(asyncpg.connect(dsn))
    try:
        # A lock taken by hand (or a migration) on the outbox: its next scan waits on it, while
        # the database itself still answers, until the server cancels the statement.
        loop.run_until_complete(locker.execute("BEGIN; LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
        locked = time.monotonic()
        assert service.get("/readyz").json() == {"ready": True}
        wait_until(
            lambda: service.get("/readyz").status_code == 503, STATEMENT_TIMEOUT + 15, "readyz 503"
        )
        assert time.monotonic() - locked > STATEMENT_TIMEOUT - 1  # the scan began just before
        problems = ["outbox: database unavailable"]
        assert service.get("/readyz").json() == {"ready": False, "problems": problems}
        assert "canceling statement due to statement timeout" in service.output()
    finally:
        loop.run_until_complete(locker.close())
        loop.close()
    wait_until(lambda: service.get("/readyz").status_code == 200, 10, "ready again")
