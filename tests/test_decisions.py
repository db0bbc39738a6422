"""Approve and Reject clicks, end to end: permission, claims, Rotor answers, message updates."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from app.sandbox.slack_objects import Fault, Message
from tests.conftest import CAROL, DAVE, MALLORY, posted, set_claim, stored, wait_until


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


def decided(slack, approval_id, timeout=10.0):
    return wait_until(
        lambda: (m := slack.find(approval_id)[0]).edited and outcome(m) and m,
        timeout,
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


def test_unreadable_user_group_grants_nothing_and_a_read_one_is_cached(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 8})
    message = posted(slack, approval["id"])
    slack.fail(Fault("usergroups.users.list", error="missing_scope", status=200))
    slack.click(DAVE, message, "approve")
    wait_until(lambda: notices(slack, DAVE), what="the refusal")
    assert "not an approver" in notices(slack, DAVE)[0]
    assert rotor.decision_calls == []
    # The failure was not cached: the next click reads the group again and Dave may reject.
    slack.click(DAVE, message, "reject")
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the modal")
    assert slack.count("usergroups.users.list") == 2
    # Read groups are cached: Dave, just removed from the group, still decides within the minute.
    slack.usergroups = {}
    slack.submit_view(DAVE, view_id, {"reason": {"reason_input": "no"}})
    wait_until(lambda: rotor.status(approval["id"]) == "rejected")
    assert slack.count("usergroups.users.list") == 2


def test_unauthorized_click_changes_nothing(service, slack, rotor, database_url):
    approval = rotor.enqueue("payments", {"amount": 7})
    message = posted(slack, approval["id"])
    assert slack.click(MALLORY, message, "approve").status_code == 200
    wait_until(lambda: notices(slack, MALLORY), what="an ephemeral refusal")
    assert "not an approver" in notices(slack, MALLORY)[0]
    assert "Who can decide: <@U0CAROL> <!subteam^S0FINANCE>." in notices(slack, MALLORY)[0]
    slack.click(MALLORY, message, "reject")
    wait_until(lambda: len(notices(slack, MALLORY)) == 2)
    # The refusal is sent before any claim or Rotor call would be made: none was.
    assert rotor.status(approval["id"]) == "pending" and rotor.decision_calls == []
    assert stored(database_url, approval["id"])[0].claimed_by is None
    assert not slack.find(approval["id"])[0].edited
    assert slack.views == {}
    assert 'rotor_slack_decisions_total{outcome="forbidden"} 2.0' in service.get("/metrics").text
    # One line (the second is folded into it): whom and what, for the operator.
    refused = [line for line in service.output().splitlines() if "refused: not an approver" in line]
    assert f"approval_id={approval['id']}" in refused[0] and f"user={MALLORY}" in refused[0]


def test_queue_without_approvers_lets_anyone_decide(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    slack.click(MALLORY, posted(slack, approval["id"]), "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")


DECIDING = "is deciding this approval right now"


def test_six_concurrent_clicks_make_one_decision(service, slack, rotor):
    rotor.accept_repeats = True  # a second decision would be applied and counted, not refused
    rotor.hold_decisions = True  # the winner's call waits at Rotor while the others click
    approval = rotor.enqueue("ops", {"n": 6})
    message = posted(slack, approval["id"])
    users = ["U0A1", "U0A2", "U0A3", "U0A4", "U0A5", "U0A6"]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda u: slack.click(u, message, "approve").status_code, users))
    assert codes == [200] * 6
    everyone = lambda: [(u, t) for u in users for t in notices(slack, u)]  # noqa: E731
    # Under load the five refusals can come before the winner's call reaches Rotor: wait for both.
    wait_until(
        lambda: len(rotor.decision_calls) > 1 or (len(everyone()) == 5 and rotor.decision_calls),
        what="five losers told and the winner's call at Rotor, or a second Rotor call",
    )
    assert rotor.decision_calls == [(approval["id"], "approved")]
    (winner,) = set(users) - {u for u, _ in everyone()}
    for _, text in everyone():
        assert text == f"<@{winner}> {DECIDING}.", text
    rotor.hold_decisions = False
    assert f"by <@{winner}>" in outcome(decided(slack, approval["id"]))
    assert rotor.decisions == [(approval["id"], "approved")]
    assert len(rotor.decision_calls) == 1


def test_a_claim_left_by_a_crashed_replica_holds_until_it_expires(
    service, slack, rotor, database_url
):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    # A replica claimed the decision, then died before Rotor answered.
    set_claim(database_url, approval["id"], "U0GONE", timedelta(seconds=50))
    slack.click(CAROL, message, "approve")
    wait_until(lambda: notices(slack, CAROL), what="the notice")
    assert notices(slack, CAROL) == [f"<@U0GONE> {DECIDING}."]
    assert rotor.decision_calls == [] and rotor.status(approval["id"]) == "pending"
    # Once the claim has run out, the next click decides.
    set_claim(database_url, approval["id"], "U0GONE", timedelta(seconds=-1))
    slack.click(CAROL, message, "approve")
    assert f"by <@{CAROL}>" in outcome(decided(slack, approval["id"]))
    assert rotor.decision_calls == [(approval["id"], "approved")]


def test_click_on_approval_decided_elsewhere_shows_the_real_state(service, slack, rotor):
    rotor.event_types = {"approval.pending"}  # no decision event: the click meets a 409
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
    assert 'rotor_slack_decisions_total{outcome="conflict"} 1.0' in service.get("/metrics").text


def test_rotor_down_keeps_the_buttons_and_decides_nothing(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    rotor.down_status = 503
    slack.click(CAROL, message, "approve")
    wait_until(lambda: notices(slack, CAROL))
    assert notices(slack, CAROL) == [
        "Could not approve: Rotor answered HTTP 503: UNAVAILABLE: Rotor is unavailable. "
        "Nothing was decided; try again."
    ]
    assert len(rotor.decision_calls) == 3  # the client's two retries
    metrics = service.get("/metrics").text
    assert 'rotor_slack_decisions_total{outcome="rotor_error"} 1.0' in metrics
    assert 'rotor_slack_rotor_errors_total{kind="RotorUnavailable"} 1.0' in metrics
    failed = [line for line in service.output().splitlines() if "failed at Rotor" in line]
    assert f"approval_id={approval['id']}" in failed[0] and f"user={CAROL}" in failed[0]
    assert not slack.find(approval["id"])[0].edited
    # The claim was released: once Rotor is back the same click works.
    rotor.down_status = None
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    decided(slack, approval["id"])
    assert 'rotor_slack_decisions_total{outcome="approved"} 1.0' in service.get("/metrics").text


ROTOR_CLIENT_TIMEOUT = 10.0  # app.rotor.RotorClient's default, which the service uses


def test_rotor_slow_beyond_timeout_still_acks_at_once(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    message = posted(slack, approval["id"])
    # Rotor decides, but answers only after the client has given up; the retry meets 409.
    rotor.lose_replies = [ROTOR_CLIENT_TIMEOUT + 1.5]
    started = time.monotonic()
    assert slack.click(CAROL, message, "approve").status_code == 200
    assert time.monotonic() - started < 1.5
    text = outcome(decided(slack, approval["id"], ROTOR_CLIENT_TIMEOUT + 10))
    assert time.monotonic() - started > ROTOR_CLIENT_TIMEOUT  # the client did time out
    assert f"Approved* by <@{CAROL}>" in text  # our own decision, not "outside Slack"
    assert rotor.decision_calls == [(approval["id"], "approved")] * 2
    assert rotor.decisions == [(approval["id"], "approved")]
    assert notices(slack, CAROL) == []


@pytest.mark.parametrize("loss", ["drop", "503"])
def test_reply_lost_after_rotor_decided_is_still_our_decision(service, slack, rotor, loss):
    approval = rotor.enqueue("payments", {})
    message = posted(slack, approval["id"])
    rotor.lose_replies = [loss]
    slack.click(CAROL, posted(slack, approval["id"]), "reject")
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the modal")
    slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "not now"}})
    text = outcome(decided(slack, approval["id"]))
    assert f"Rejected* by <@{CAROL}>" in text and "not now" in text
    assert rotor.decision_calls == [(approval["id"], "rejected")] * 2
    assert rotor.decisions == [(approval["id"], "rejected")]
    assert rotor.approvals[approval["id"]]["reason"] == "not now"
    assert notices(slack, CAROL) == []
    assert message.ts == slack.find(approval["id"])[0].ts


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
    # Slack enforces max_length in its form, but a forged submission may carry more.
    long = slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "x" * 3001}})
    assert long.json() == {
        "response_action": "errors",
        "errors": {"reason": "Keep it under 3000 characters."},
    }
    assert rotor.status(approval["id"]) == "pending" and rotor.decision_calls == []

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
    assert rotor.status(approval["id"]) == "pending" and rotor.decision_calls == []


def test_view_full_payload_opens_a_modal_with_everything(service, slack, rotor):
    payload = {"rows": [{"email": f"user{i}@example.com", "token": "t"} for i in range(300)]}
    approval = rotor.enqueue("ops", payload)
    message = posted(slack, approval["id"])
    assert "view_payload" in buttons(message)
    # views.open failing (an expired trigger, say) tells the person to click again.
    slack.fail(Fault("views.open", error="expired_trigger_id", status=200))
    slack.click(CAROL, message, "view_payload")
    wait_until(lambda: notices(slack, CAROL), what="the notice")
    assert notices(slack, CAROL) == ["Could not open the form; please click again."]
    # A button naming an approval this service never stored opens nothing.
    unknown = "apv_" + "0" * 32
    forged = Message(
        message.channel,
        message.ts,
        message.text,
        json.loads(json.dumps(message.blocks).replace(approval["id"], unknown)),
    )
    slack.click(CAROL, forged, "view_payload")
    wait_until(lambda: len(notices(slack, CAROL)) == 2, what="the second notice")
    assert notices(slack, CAROL)[1] == "This approval is not stored here."
    assert slack.views == {}
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


def test_a_queue_without_approvers_belongs_to_its_channel_s_members(start_service, slack, rotor):
    # The queue is not in the policy, so it posts to the default channel, and belongs to its
    # 1,500 members: more than one page of conversations.members.
    slack.members["C0APPROVALS"] = [f"U{n:08d}" for n in range(1499)] + [CAROL]
    service = start_service()
    approval = rotor.enqueue("ops", {"n": 1})
    message = posted(slack, approval["id"])
    # Mallory is in the workspace, not in that channel: she may not decide, list or see it.
    slack.click(MALLORY, message, "approve")
    wait_until(lambda: notices(slack, MALLORY), what="the refusal")
    assert notices(slack, MALLORY) == [
        "You are not an approver for `ops`, so you cannot approve this job. "
        "Who can decide: the members of <#C0APPROVALS>."
    ]
    slack.slash(MALLORY, "C0APPROVALS", "ops")
    listed = wait_until(lambda: len(slack.ephemerals_for(MALLORY)) == 2, what="the list")
    assert listed and approval["id"] not in str(slack.ephemerals_for(MALLORY)[-1].blocks)
    slack.open_home(MALLORY)
    tab = wait_until(lambda: slack.homes.get(MALLORY), what="Mallory's tab")
    assert approval["id"] not in str(tab.blocks)
    # A member of the channel decides it.
    slack.click(CAROL, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    assert rotor.decision_calls == [(approval["id"], "approved")]
    assert slack.count("conversations.members") >= 2  # paged
    assert 'outcome="forbidden"' in service.get("/metrics").text
