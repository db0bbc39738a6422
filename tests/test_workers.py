"""Reminders, escalation and the sync with Rotor, end to end with short durations."""

from __future__ import annotations

import time

from tests.conftest import CAROL, OPS, PAYMENTS, make_policy, posted, wait_until

FAST_REMINDERS = make_policy(after="1s", every="1s", escalate_after=2, check_every="200ms")
FAST_SYNC = make_policy(sync_every="300ms")


def test_reminders_in_the_thread_then_one_escalation(start_service, slack, rotor):
    start_service(FAST_REMINDERS)
    approval = rotor.enqueue("payments", {"amount": 1})
    message = posted(slack, approval["id"])
    escalations = wait_until(lambda: slack.channel_messages("C0ESCALATE"), 15, "the escalation")
    replies = slack.replies(message)
    assert len(replies) == 2
    for reply in replies:
        assert f"<@{CAROL}>" in reply.text and "<!subteam^S0FINANCE>" in reply.text
    (escalation,) = escalations
    assert f"/archives/C0FINANCE/p{message.ts}" in escalation.text
    assert "after 2 reminders" in escalation.text
    time.sleep(2.5)  # nothing more after the escalation
    assert len(slack.replies(message)) == 2
    assert len(slack.channel_messages("C0ESCALATE")) == 1


def test_reminders_stop_once_decided(start_service, slack, rotor):
    start_service(FAST_REMINDERS)
    approval = rotor.enqueue("payments", {"amount": 2})
    message = posted(slack, approval["id"])
    wait_until(lambda: slack.replies(message), 10, "the first reminder")
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    wait_until(lambda: slack.find(approval["id"])[0].edited)
    count = len(slack.replies(message))
    time.sleep(3)
    assert len(slack.replies(message)) == count
    assert slack.channel_messages("C0ESCALATE") == []


def test_sync_posts_approvals_whose_webhook_never_arrived(start_service, slack, rotor):
    missed = rotor.create("ops", {"webhook": "lost"})
    start_service(FAST_SYNC)
    message = posted(slack, missed["id"])
    assert message.channel == "C0APPROVALS"
    time.sleep(1)
    assert len(slack.find(missed["id"])) == 1  # later syncs do not post it again


def test_sync_updates_messages_of_approvals_decided_elsewhere(start_service, slack, rotor):
    start_service(FAST_SYNC)
    approval = rotor.enqueue("ops", {})
    posted(slack, approval["id"])
    rotor.decide_outside(approval["id"], "approved")
    message = wait_until(
        lambda: (m := slack.find(approval["id"])[0]).edited and m, 10, "the update"
    )
    assert "Approved* outside Slack" in str(message.blocks)
    assert message.text.startswith("Approved")
    assert not any(b["type"] == "actions" for b in message.blocks)


def test_sync_reaches_approvals_beyond_one_page_on_both_sides(start_service, slack, rotor):
    # 150 pending: more than a page of Rotor's list and of the local scan (100 each).
    queues = ["payments", "ops", "other"]
    ids = [rotor.create(queues[i % 3], {"i": i})["id"] for i in range(150)]
    start_service(make_policy(sync_every="300ms", queues=PAYMENTS + OPS))

    def messages(edited: bool = False) -> list[str]:
        with slack._lock:  # one pass over the messages, not one a poll for each approval
            return [
                m.metadata["event_payload"]["approval_id"]
                for m in slack.messages
                if m.metadata and m.edited >= edited
            ]

    wait_until(lambda: set(messages()) == set(ids), 60, "every missed approval posted")
    for approval_id in ids:
        rotor.decide_outside(approval_id, "rejected", "done by hand")
    wait_until(lambda: set(messages(edited=True)) == set(ids), 60, "every message updated")
    assert sorted(messages()) == sorted(ids)  # each posted once
