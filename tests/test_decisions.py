"""Approve and Reject clicks, end to end: permission, claims, Rotor answers, message updates."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import CAROL, DAVE, MALLORY, posted, wait_until


def buttons(message) -> list[str]:
    return [
        e.get("action_id", "").split(":")[0]
        for b in message.blocks
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def outcome(message) -> str:
    block = next((b for b in message.blocks if b.get("block_id") == "outcome"), None)
    return block["text"]["text"] if block else ""


def decided(slack, approval_id):
    return wait_until(
        lambda: (m := slack.find(approval_id)[0]).edited and outcome(m) and m,
        what="the message to show the decision",
    )


def notices(slack, user) -> list[str]:
    return [e.text for e in slack.ephemerals_for(user)]


def test_approve_decides_in_rotor_and_updates_the_message(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 5})
    message = posted(slack, approval["id"])
    assert slack.click(CAROL, message, "approve").status_code == 200
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    message = decided(slack, approval["id"])
    assert f"Approved* by <@{CAROL}>" in outcome(message)
    assert "<!date^" in outcome(message)
    assert "approve" not in buttons(message) and "reject" not in buttons(message)
    assert message.text.startswith("Approved")
    assert notices(slack, CAROL) == []


def test_user_group_member_may_approve(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 6})
    slack.click(DAVE, posted(slack, approval["id"]), "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    assert f"<@{DAVE}>" in outcome(decided(slack, approval["id"]))


def test_unauthorized_click_changes_nothing(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 7})
    message = posted(slack, approval["id"])
    assert slack.click(MALLORY, message, "approve").status_code == 200
    wait_until(lambda: notices(slack, MALLORY), what="an ephemeral refusal")
    assert "not an approver" in notices(slack, MALLORY)[0]
    assert "Who can decide: <@U0CAROL> <!subteam^S0FINANCE>." in notices(slack, MALLORY)[0]
    slack.click(MALLORY, message, "reject")
    wait_until(lambda: len(notices(slack, MALLORY)) == 2)
    time.sleep(0.3)
    assert rotor.status(approval["id"]) == "pending" and rotor.decisions == []
    assert not slack.find(approval["id"])[0].edited
    assert slack.views == {}


def test_queue_without_approvers_lets_anyone_decide(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    slack.click(MALLORY, posted(slack, approval["id"]), "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")


def test_six_concurrent_clicks_make_one_decision(service, slack, rotor):
    rotor.latency = 0.3  # clicks overlap while Rotor thinks
    approval = rotor.enqueue("ops", {"n": 6})
    message = posted(slack, approval["id"])
    users = ["U0A1", "U0A2", "U0A3", "U0A4", "U0A5", "U0A6"]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda u: slack.click(u, message, "approve").status_code, users))
    assert codes == [200] * 6
    decided(slack, approval["id"])
    wait_until(lambda: sum(len(notices(slack, u)) for u in users) == 5, what="five notices")
    assert rotor.decisions == [(approval["id"], "approved")]


def test_click_on_approval_decided_elsewhere_shows_the_real_state(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    rotor.decide_outside(approval["id"], "rejected", "done from the CLI")
    slack.click(CAROL, message, "approve")
    wait_until(lambda: notices(slack, CAROL))
    assert "already *rejected* outside Slack" in notices(slack, CAROL)[0]
    message = decided(slack, approval["id"])
    assert "Rejected* outside Slack" in outcome(message)
    assert "done from the CLI" in outcome(message)
    assert rotor.status(approval["id"]) == "rejected"


def test_rotor_down_keeps_the_buttons_and_decides_nothing(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    rotor.down_status = 503
    slack.click(CAROL, message, "approve")
    wait_until(lambda: notices(slack, CAROL))
    assert "Nothing was decided" in notices(slack, CAROL)[0]
    assert not slack.find(approval["id"])[0].edited
    # The claim was released: once Rotor is back the same click works.
    rotor.down_status = None
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    decided(slack, approval["id"])


def test_rotor_slow_beyond_timeout_still_acks_at_once(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    rotor.latency = 2.5
    started = time.monotonic()
    assert slack.click(CAROL, message, "approve").status_code == 200
    assert time.monotonic() - started < 1.5
    wait_until(lambda: rotor.status(approval["id"]) == "approved", 10)
    decided(slack, approval["id"])


def test_reject_asks_for_a_reason_and_shows_it(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 1_000_000})
    message = posted(slack, approval["id"])
    slack.click(CAROL, message, "reject")
    view_id, view = wait_until(lambda: next(iter(slack.views.items()), None), what="the modal")
    assert view["callback_id"] == "reject_reason" and view["user"] == CAROL
    reason_input = next(b for b in view["blocks"] if b["type"] == "input")
    assert reason_input["element"]["max_length"] == 3000

    empty = slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "   "}})
    assert empty.json() == {"response_action": "errors", "errors": {"reason": "Give a reason."}}
    assert rotor.status(approval["id"]) == "pending"

    response = slack.submit_view(
        CAROL, view_id, {"reason": {"reason_input": "Too large; <!channel> split it"}}
    )
    assert response.status_code == 200 and not response.content
    wait_until(lambda: rotor.status(approval["id"]) == "rejected")
    assert rotor.approvals[approval["id"]]["reason"] == "Too large; <!channel> split it"
    text = outcome(decided(slack, approval["id"]))
    assert f"Rejected* by <@{CAROL}>" in text
    assert "Too large; &lt;!channel&gt; split it" in text


def test_reject_submitted_by_non_approver_is_refused(service, slack, rotor):
    approval = rotor.enqueue("payments", {})
    slack.click(CAROL, posted(slack, approval["id"]), "reject")
    view_id = wait_until(lambda: next(iter(slack.views), None))
    # A forged submission of Carol's modal by someone else decides nothing.
    slack.submit_view(MALLORY, view_id, {"reason": {"reason_input": "sneaky"}})
    wait_until(lambda: any("not an approver" in e.text for e in slack.ephemerals))
    assert rotor.status(approval["id"]) == "pending" and rotor.decisions == []


def test_view_full_payload_opens_a_modal_with_everything(service, slack, rotor):
    payload = {"rows": [{"email": f"user{i}@example.com", "token": "t"} for i in range(300)]}
    approval = rotor.enqueue("ops", payload)
    message = posted(slack, approval["id"])
    assert "view_payload" in buttons(message)
    slack.click(CAROL, message, "view_payload")
    view = wait_until(lambda: next(iter(slack.views.values()), None), what="the payload modal")
    shown = "".join(
        b["elements"][0]["elements"][0]["text"] for b in view["blocks"] if b["type"] == "rich_text"
    )
    assert json.loads(shown) == {
        "rows": [{"email": f"user{i}@example.com", "token": "••••••"} for i in range(300)]
    }


def test_full_payload_only_for_those_who_may_decide(service, slack, rotor):
    approval = rotor.enqueue("payments", {"rows": ["secret-ish row"] * 500})
    message = posted(slack, approval["id"])
    slack.click(MALLORY, message, "view_payload")
    wait_until(lambda: notices(slack, MALLORY), what="the refusal")
    assert "Only the approvers of `payments`" in notices(slack, MALLORY)[0]
    assert slack.views == {}  # the refusal is told after the check: no modal was opened
    slack.click(DAVE, message, "view_payload")
    wait_until(lambda: slack.views, what="the modal for a group member")


def test_signed_requests_only(service, slack):
    body = "payload=" + json.dumps({"type": "block_actions"})
    response = service.post(
        "/slack/events",
        content=body,
        headers={
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "0" * 64,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 401
