"""Rotor's decision events and webhook.test, end to end: the real service on the stand-ins."""

from __future__ import annotations

import json

from app import signing
from app.sandbox.rotor import sign_webhook
from app.sandbox.slack_objects import Fault
from tests.conftest import CAROL, drained, make_policy, posted, stored, wait_until

DECIDED = "rotor_slack_decision_seconds_count"

# No sync during these tests: whatever reaches Slack came through the events.
NO_SYNC = make_policy(
    sync_every="1h",
    queues="""
[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["U0CAROL"]
requester = "requested_by"
""",
)


def outcome(message) -> str:
    block = next((b for b in message.blocks if b.get("block_id") == "outcome"), None)
    return block["text"]["text"] if block else ""


def has_buttons(message) -> bool:
    return any(b["type"] == "actions" for b in message.blocks)


def updated(slack, approval_id: str, timeout: float = 10.0):
    def edited():
        found = slack.find(approval_id)
        return found and found[0].edited and found[0]

    return wait_until(edited, timeout, "the message updated")


def test_a_decision_made_in_rotor_reaches_slack_and_the_requester(start_service, slack, rotor):
    start_service(NO_SYNC)
    approval = rotor.enqueue("payments", {"amount": 5, "requested_by": "U0DAVE"})
    posted(slack, approval["id"])
    rotor.decide_outside(approval["id"], "rejected", "Timed out by policy")
    message = updated(slack, approval["id"])
    assert "Rejected* outside Slack" in outcome(message)
    assert "Timed out by policy" in outcome(message)
    assert not has_buttons(message)
    dm = wait_until(lambda: slack.dms_for("U0DAVE"), 10, "the requester's DM")
    assert "rejected" in dm[0].text.lower()


def test_a_decision_made_while_the_message_is_being_posted_still_reaches_the_requester(
    start_service, slack, rotor
):
    start_service(NO_SYNC)
    # Slack takes its time over the message: the decision comes before the service knows the
    # message, or who asked (read from the payload as the message is posted).
    slow = slack.fail(Fault("chat.postMessage", channel="C0FINANCE", error=None, delay=2.0))
    approval = rotor.enqueue("payments", {"amount": 5, "requested_by": "U0DAVE"})
    wait_until(lambda: slow.count == 0, 10, "the message on its way")
    rotor.decide_outside(approval["id"], "rejected", "Timed out by policy")
    assert "Rejected* outside Slack" in outcome(updated(slack, approval["id"]))
    (dm,) = wait_until(lambda: slack.dms_for("U0DAVE"), 10, "the requester's DM")
    assert "rejected" in dm.text.lower() and "/archives/C0FINANCE/" in dm.text  # with its link


def test_an_event_for_an_approval_never_seen_records_it_decided_without_buttons(
    start_service, slack, rotor, database_url
):
    start_service(NO_SYNC)
    lost = rotor.create("payments", {"amount": 7})  # its approval.pending never arrived
    rotor.decide_outside(lost["id"], "approved")
    message = posted(slack, lost["id"])
    assert "Approved* outside Slack" in outcome(message)
    assert not has_buttons(message)
    (row,) = stored(database_url, lost["id"])
    assert (row.status, row.decided_by) == ("approved", None)
    # The pending webhook arriving late changes nothing and posts nothing again.
    assert rotor.deliver(lost["id"]).json() == {"status": "duplicate"}


def test_redelivered_and_out_of_order_events_do_nothing_twice(start_service, slack, rotor):
    service = start_service(NO_SYNC)
    approval = rotor.create("payments", {"amount": 9})
    rotor.decide_outside(approval["id"], "approved")
    body = rotor.event_body(approval["id"], "approval.approved")
    answers = [rotor.send_webhook(body).status_code for _ in range(3)]  # redelivered
    assert answers == [202, 202, 202]
    posted(slack, approval["id"])
    assert rotor.deliver(approval["id"]).status_code == 200  # approved before pending
    drained(service)
    # One message, posted already decided, never updated; each event read Rotor once at most.
    assert 1 <= rotor.get_calls <= 4
    (message,) = slack.find(approval["id"])
    assert not message.edited and "Approved* outside Slack" in outcome(message)
    assert slack.count("chat.update") == 0 and slack.count("chat.postMessage") == 1


def test_a_click_then_rotor_s_own_event_of_it_records_one_decision(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 3})
    message = posted(slack, approval["id"])
    slack.click(CAROL, message, "approve")
    message = wait_until(
        lambda: (m := slack.find(approval["id"])[0]).edited and "by <@" in outcome(m) and m
    )
    # Rotor sends approval.approved for the click too: it must not turn into "outside Slack".
    reads = rotor.get_calls
    assert rotor.send_webhook(rotor.event_body(approval["id"], "approval.approved")).is_success
    wait_until(lambda: rotor.get_calls > reads, what="the event read from Rotor")
    drained(service)
    assert f"Approved* by <@{CAROL}>" in outcome(slack.find(approval["id"])[0])
    assert rotor.decision_calls == [(approval["id"], "approved")]


def test_rotor_down_when_the_event_arrives_is_settled_once_it_answers(start_service, slack, rotor):
    start_service(NO_SYNC)
    approval = rotor.enqueue("payments", {"amount": 4})
    posted(slack, approval["id"])
    rotor.event_types = {"approval.pending"}  # the event is sent by hand, below
    rotor.decide_outside(approval["id"], "approved")
    rotor.down_status = 503  # Rotor cannot be read when its event arrives
    body = rotor.event_body(approval["id"], "approval.approved")
    assert rotor.send_webhook(body).status_code == 202
    wait_until(lambda: rotor.get_calls >= 3, what="a read that failed (and its two retries)")
    assert not slack.find(approval["id"])[0].edited
    rotor.down_status = None
    assert "Approved* outside Slack" in outcome(updated(slack, approval["id"], timeout=20))


def test_webhook_test_and_both_header_families(start_service, rotor):
    service = start_service(NO_SYNC)
    assert "will be unused" not in service.output()  # bolt's warning about our own token
    assert rotor.send_test().json() == {"status": "ok"}
    wait_until(lambda: "webhook.test: a verified test event arrived" in service.output())
    # A Standard Webhooks relay in front of the service: the same scheme under other names.
    approval = rotor.create("payments", {"amount": 1})
    body = rotor.event_body(approval["id"])
    headers = sign_webhook(rotor.webhook_secret, body, names=signing.STANDARD)
    assert "rotor-webhook-id" not in headers
    assert rotor.send_webhook(body, headers=headers).status_code == 202
    # Rotor's names are what the stand-in sends by default.
    other = rotor.create("payments", {"amount": 2})
    assert set(sign_webhook(rotor.webhook_secret, "x")) >= set(signing.ROTOR)
    assert rotor.deliver(other["id"]).status_code == 202


def test_a_plain_secret_and_a_rotation_are_accepted(start_service, rotor):
    rotor.webhook_secret = "new-plain-secret"
    start_service(NO_SYNC, ROTOR_WEBHOOK_SECRET="new-plain-secret whsec_b2xkb2xkb2xkb2xk")
    assert rotor.deliver(rotor.create("payments", {"amount": 1})["id"]).status_code == 202
    rotor.webhook_secret = "whsec_b2xkb2xkb2xkb2xk"
    assert rotor.deliver(rotor.create("payments", {"amount": 2})["id"]).status_code == 202
    rotor.webhook_secret = "another-secret"
    refused = rotor.deliver(rotor.create("payments", {"amount": 3})["id"])
    assert refused.status_code == 401
    assert json.loads(refused.text)["error"].endswith("no signature matches the webhook secret")


def test_queues_outside_the_policy_share_one_metric_label(start_service, slack, rotor):
    service = start_service(NO_SYNC)
    queues = ["payments"] + [f"q{n}-{'x' * 50}" for n in range(12)]
    for queue in queues:
        rotor.decide_outside(rotor.create(queue, {})["id"], "approved")

    def counts() -> dict[str, float]:
        lines = service.get("/metrics", ops=True).text.splitlines()
        return {
            line.split("queue=")[1].split('"')[1]: float(line.split()[-1])
            for line in lines
            if line.startswith(DECIDED)
        }

    wait_until(lambda: sum(counts().values()) == len(queues), what="every decision counted")
    assert counts() == {"payments": 1.0, "other": 12.0}
