"""Reminders, escalation and the sync with Rotor, end to end with short durations."""

from __future__ import annotations

from app.sandbox.slack_objects import Fault
from tests.conftest import CAROL, drained, make_policy, posted, stored, wait_until

FAST_REMINDERS = make_policy(after="1s", every="1s", escalate_after=2, check_every="200ms")
FAST_SYNC = make_policy(sync_every="300ms")


def test_reminders_in_the_thread_then_one_escalation(start_service, slack, rotor, database_url):
    service = start_service(FAST_REMINDERS)
    approval = rotor.enqueue("payments", {"amount": 1})
    message = posted(slack, approval["id"])
    escalations = wait_until(lambda: slack.channel_messages("C0ESCALATE"), 15, "the escalation")
    replies = slack.replies(message)
    assert len(replies) == 2
    for reply in replies:
        assert f"<@{CAROL}>" in reply.text and "<!subteam^S0FINANCE>" in reply.text
    (escalation,) = escalations
    assert f"/archives/C0FINANCE/p{message.ts.replace('.', '')}" in escalation.text
    assert "after 2 reminders" in escalation.text
    # Nothing more after the escalation: the row has no next due time and no task is left.
    drained(service)
    (row,) = stored(database_url, approval["id"])
    assert row.reminders_sent == 2 and row.next_reminder_at is None
    assert len(slack.replies(message)) == 2
    assert len(slack.channel_messages("C0ESCALATE")) == 1


def test_reminders_stop_once_decided(start_service, slack, rotor, database_url):
    service = start_service(FAST_REMINDERS)
    approval = rotor.enqueue("payments", {"amount": 2})
    message = posted(slack, approval["id"])
    wait_until(lambda: slack.replies(message), 10, "the first reminder")
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    wait_until(lambda: slack.find(approval["id"])[0].edited)
    # Decided: no next due time, and a reminder queued just before is dropped when it runs.
    drained(service)
    (row,) = stored(database_url, approval["id"])
    assert row.status == "approved" and row.next_reminder_at is None
    assert all("Please decide" in r.text for r in slack.replies(message))
    assert slack.channel_messages("C0ESCALATE") == []


def test_sync_posts_approvals_whose_webhook_never_arrived(start_service, slack, rotor):
    missed = rotor.create("ops", {"webhook": "lost"})
    start_service(FAST_SYNC)
    message = posted(slack, missed["id"])
    assert message.channel == "C0APPROVALS"
    # Later syncs, which still see it pending in Rotor, do not post it again.
    seen = rotor.list_calls
    wait_until(lambda: rotor.list_calls >= seen + 3, 10, "three more syncs")
    assert len(slack.find(missed["id"])) == 1


def test_sync_updates_messages_of_approvals_decided_elsewhere(start_service, slack, rotor):
    rotor.event_types = {"approval.pending"}  # no decision events: the sync finds it
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


def test_without_an_escalation_channel_and_a_permalink_escalates_in_the_queue_channel(
    start_service, slack, rotor
):
    policy = make_policy(
        after="1s", every="1s", escalate_after=1, escalation_channel=None, check_every="200ms"
    )
    start_service(policy)
    slack.fail(Fault("chat.getPermalink", count=None, error="message_not_found", status=200))
    approval = rotor.enqueue("payments", {"amount": 3})
    message = posted(slack, approval["id"])
    escalation = wait_until(
        lambda: [m for m in slack.channel_messages("C0FINANCE") if "Nobody" in m.text],
        15,
        "the escalation",
    )[0]
    assert (
        f"`{approval['id']}`" in escalation.text and "<http" not in escalation.text
    )  # the id, no link
    assert "after 1 reminders" in escalation.text
    assert len(slack.replies(message)) == 1


def test_sync_pages_through_rotor_and_survives_404_and_an_outage(
    start_service, slack, rotor, database_url
):
    slack.posts_per_second, slack.burst = 500, 50
    rotor.event_types = {"approval.pending"}  # no decision events: the sync finds it
    missed = [rotor.create("ops", {"i": i})["id"] for i in range(105)]  # past one page of 100
    service = start_service(make_policy(rate=500, sync_every="300ms"))
    gone = rotor.enqueue("ops", {"deleted": "in Rotor"})["id"]
    posted(slack, gone)
    del rotor.approvals[gone]
    wait_until(lambda: all(slack.find(a) for a in missed), 30, "every missed approval posted")
    # Rotor down: the sync logs it, counts it and goes on once Rotor is back.
    rotor.down_status = 503
    wait_until(
        lambda: 'rotor_errors_total{kind="RotorUnavailable"}' in service.get("/metrics").text,
        30,
        "the Rotor error counted",
    )
    assert service.get("/readyz").status_code == 200
    rotor.down_status = None
    rotor.decide_outside(missed[0], "rejected", "too late")
    wait_until(lambda: slack.find(missed[0])[0].edited, 15, "the update after the outage")
    drained(service)
    assert [len(slack.find(a)) for a in missed] == [1] * 105
    # The approval Rotor no longer knows is left as it was, not decided or dropped.
    (row,) = stored(database_url, gone)
    assert row.status == "pending" and not slack.find(gone)[0].edited
