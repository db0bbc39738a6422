"""Two `rotor-slack serve` replicas on one database and one Slack: work is shared, never doubled."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import CAROL, OPS, PAYMENTS, make_policy, wait_until
from tests.test_faults import assert_each_posted_once

QUEUES = ["payments", "ops", "general", "escalations"]


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
    approvals = [rotor.create(QUEUES[i % 4], {"i": i}) for i in range(500)]

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
    assert_each_posted_once(slack, [x["id"] for x in approvals], timeout=120)


def test_clicks_on_both_replicas_make_one_decision(replicas, slack, rotor):
    a, b = replicas()
    rotor.latency = 0.3
    approval = rotor.create("ops", {})
    rotor.deliver(approval["id"], url=f"{a.url}/rotor/webhook")
    message = wait_until(lambda: slack.find(approval["id"]))[0]
    with ThreadPoolExecutor(6) as pool:
        for i in range(6):
            slack.app_url = f"{(a, b)[i % 2].url}/slack/events"
            pool.submit(slack.click, f"U0CLICK{i}", message, "approve")
    wait_until(lambda: slack.find(approval["id"])[0].edited)
    assert rotor.decisions == [(approval["id"], "approved")]


def test_reminders_for_100_approvals_are_sent_once_each(replicas, slack, rotor):
    a, b = replicas(after="1s")
    ids = []
    for i in range(100):
        approval = rotor.create(QUEUES[i % 4], {"i": i})
        rotor.deliver(approval["id"], url=f"{(a, b)[i % 2].url}/rotor/webhook")
        ids.append(approval["id"])
    assert_each_posted_once(slack, ids)
    messages = [slack.find(x)[0] for x in ids]
    wait_until(lambda: all(slack.replies(m) for m in messages), 30, "a reminder for each")
    time.sleep(1.5)  # both replicas keep sweeping: nothing may be sent twice
    assert [len(slack.replies(m)) for m in messages] == [1] * 100


def test_a_replica_killed_mid_burst_leaves_its_work_to_the_other(replicas, slack, rotor):
    slack.posts_per_second = 20
    a, b = replicas()
    ids = [rotor.create(QUEUES[i % 4], {"i": i})["id"] for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda x: rotor.deliver(x, url=f"{a.url}/rotor/webhook"), ids))
    wait_until(lambda: slack.count("chat.postMessage") >= 20, 20, "posting to begin")
    a.process.kill()
    a.process.wait()
    assert_each_posted_once(slack, ids, timeout=120)
    # The surviving replica still serves clicks.
    slack.app_url = f"{b.url}/slack/events"
    slack.click(CAROL, slack.find(ids[0])[0], "approve")
    wait_until(lambda: rotor.status(ids[0]) == "approved")
