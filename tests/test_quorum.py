"""Four eyes: quorum approvals, no self-approval, and the requester told how it ended."""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import (
    CAROL,
    DAVE,
    MALLORY,
    audit,
    audit_rows,
    drained,
    make_policy,
    posted,
    wait_until,
)
from tests.test_decisions import decided, notices, outcome

ERIN = "U0ERIN"
QUORUM = """
[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["U0CAROL", "S0FINANCE"]
required_approvals = 2
requester = "requestedBy"

[[queues]]
name = "ops"
channel = "C0OPS"
requester = "meta.owner"
"""


@pytest.fixture
def service(start_service, slack):
    slack.usergroups = {"S0FINANCE": [DAVE, ERIN]}
    slack.emails = {"mallory@example.com": MALLORY}
    return start_service(make_policy(queues=QUORUM))


def block_text(message, block_id: str) -> str:
    block = next((b for b in message.blocks if b.get("block_id") == block_id), None)
    return block["text"]["text"] if block else ""


def test_quorum_progress_then_one_decision_naming_every_approver(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 48_500, "requestedBy": MALLORY})
    message = posted(slack, approval["id"])
    assert "0 of 2 approvals" in block_text(message, "quorum")
    confirm = next(b for b in message.blocks if b["type"] == "actions")["elements"][0]["confirm"]
    assert "2 people" in confirm["text"]["text"]

    slack.click(CAROL, message, "approve")
    message = wait_until(
        lambda: (
            "1 of 2 approvals:* <@U0CAROL>"
            in block_text(m := slack.find(approval["id"])[0], "quorum")
            and m
        ),
        what="the progress shown",
    )
    assert any(b["type"] == "actions" for b in message.blocks)  # the buttons stay
    slack.click(CAROL, message, "approve")
    wait_until(lambda: notices(slack, CAROL), what="a notice for the second click")
    assert notices(slack, CAROL) == ["You approved already; waiting for 1 more approval."]
    assert rotor.status(approval["id"]) == "pending"

    slack.click(DAVE, message, "approve")
    decided_message = decided(slack, approval["id"])
    assert "<@U0CAROL>, <@U0DAVE>" in outcome(decided_message)
    assert rotor.decisions == [(approval["id"], "approved")]
    dm = wait_until(lambda: slack.dms_for(MALLORY), what="the requester's DM")
    assert len(dm) == 1 and "Approved" in dm[0].text and "<@U0DAVE>" in dm[0].text


def test_two_final_approvals_at_once_make_one_rotor_call(service, start_service, slack, rotor):
    other = start_service(make_policy(queues=QUORUM))  # a second replica on the same database
    approval = rotor.enqueue("payments", {"amount": 1})
    message = posted(slack, approval["id"])
    slack.click(CAROL, message, "approve")
    wait_until(lambda: "1 of 2" in block_text(slack.find(approval["id"])[0], "quorum"))
    rotor.latency = 0.5  # the last two clicks overlap while Rotor thinks
    replica = {DAVE: f"{service.url}/slack/events", ERIN: f"{other.url}/slack/events"}
    with ThreadPoolExecutor(2) as pool:
        codes = list(
            pool.map(
                lambda u: slack.click(u, message, "approve", app_url=replica[u]).status_code,
                [DAVE, ERIN],
            )
        )
    assert codes == [200, 200]
    decided(slack, approval["id"])
    wait_until(lambda: notices(slack, DAVE) or notices(slack, ERIN), what="the loser told")
    assert rotor.decision_calls == [(approval["id"], "approved")]


def test_a_reject_ends_a_quorum_and_shows_who_had_approved(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 2})
    message = posted(slack, approval["id"])
    slack.click(CAROL, message, "approve")
    wait_until(lambda: "1 of 2" in block_text(slack.find(approval["id"])[0], "quorum"))
    slack.click(DAVE, message, "reject")
    view_id = wait_until(lambda: list(slack.views), what="the reason modal")[0]
    slack.submit_view(DAVE, view_id, {"reason": {"reason_input": "wrong beneficiary"}})
    text = outcome(decided(slack, approval["id"]))
    assert "Rejected" in text and "wrong beneficiary" in text
    assert "Approved before:* <@U0CAROL>" in text
    assert rotor.decisions == [(approval["id"], "rejected")]


def test_rotor_refusing_a_reject_or_a_final_vote_keeps_the_count_right(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 3})
    message = posted(slack, approval["id"])
    slack.click(CAROL, message, "approve")
    wait_until(lambda: "1 of 2" in block_text(slack.find(approval["id"])[0], "quorum"))
    rotor.down_status = 503
    # Carol's reject fails at Rotor: her approval still counts.
    slack.click(CAROL, message, "reject")
    view_id = wait_until(lambda: list(slack.views), what="the reason modal")[0]
    slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "on second thoughts"}})
    wait_until(lambda: notices(slack, CAROL), what="Carol's notice")
    assert notices(slack, CAROL)[0].startswith(
        "Could not reject: Rotor answered HTTP 503: UNAVAILABLE: Rotor is unavailable."
    )
    slack.click(DAVE, message, "approve")
    wait_until(lambda: notices(slack, DAVE), what="Dave's notice")
    assert notices(slack, DAVE)[0].startswith(
        "Could not approve: Rotor answered HTTP 503: UNAVAILABLE: Rotor is unavailable."
    )
    rotor.down_status = None
    slack.click(DAVE, message, "approve")  # counted again, not "you approved already"
    assert "<@U0CAROL>, <@U0DAVE>" in outcome(decided(slack, approval["id"]))
    assert len(notices(slack, DAVE)) == 1 and rotor.decisions == [(approval["id"], "approved")]


def test_the_requester_cannot_approve_but_may_withdraw(service, slack, rotor):
    by_email = rotor.enqueue("payments", {"requestedBy": "Mallory@Example.com"})
    by_id = rotor.enqueue("ops", {"meta": {"owner": CAROL}})
    first, second = posted(slack, by_email["id"]), posted(slack, by_id["id"])
    assert "<@U0MALLORY>" in str(first.blocks)  # "Requested by" on the message
    slack.usergroups["S0FINANCE"].append(MALLORY)  # an approver too: still not their own job
    slack.click(MALLORY, first, "approve")
    slack.click(CAROL, second, "approve")
    wait_until(lambda: notices(slack, MALLORY) and notices(slack, CAROL))
    for user in (MALLORY, CAROL):
        assert notices(slack, user) == ["You requested this job, so someone else must approve it."]
    assert rotor.decisions == []
    assert 'rotor_slack_decisions_total{outcome="forbidden"} 2.0' in service.get("/metrics").text
    slack.click(CAROL, second, "reject")
    view_id = wait_until(lambda: list(slack.views), what="the reason modal")[0]
    slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "not needed after all"}})
    decided(slack, by_id["id"])
    assert rotor.decisions == [(by_id["id"], "rejected")]
    # She withdrew it herself: no DM tells her what she just did.
    drained(service)
    assert slack.dms_for(CAROL) == []


def test_an_unresolvable_requester_blocks_nobody(service, slack, rotor):
    approval = rotor.enqueue("ops", {"meta": {"owner": "nobody@example.com"}})
    message = posted(slack, approval["id"])
    wait_until(lambda: "requester not resolved" in service.output(), what="the log line")
    slack.click(MALLORY, message, "approve")
    decided(slack, approval["id"])
    assert rotor.decisions == [(approval["id"], "approved")]


def test_the_requester_is_told_when_it_is_decided_outside_slack(start_service, slack, rotor):
    slack.emails = {"mallory@example.com": MALLORY}
    start_service(make_policy(queues=QUORUM, sync_every="1s"))
    approval = rotor.enqueue("ops", {"meta": {"owner": "mallory@example.com"}})
    posted(slack, approval["id"])
    rotor.decide_outside(approval["id"], "approved")
    dm = wait_until(lambda: slack.dms_for(MALLORY), 15, "the requester's DM")
    assert "outside Slack" in dm[0].text


EXPIRING = (
    QUORUM
    + """
[[queues]]
name = "batch"
channel = "C0OPS"
requester = "owner"
expire_after = "6s"
"""
)


def test_expiry_once_across_replicas_and_the_audit_trail(start_service, slack, rotor, tmp_path):
    slack.emails = {"mallory@example.com": MALLORY}
    first = start_service(make_policy(queues=EXPIRING))
    start_service(make_policy(queues=EXPIRING))
    stale = rotor.enqueue("batch", {"owner": "mallory@example.com"})
    quick = rotor.enqueue("batch", {"owner": "mallory@example.com"})
    posted(slack, stale["id"])
    slack.click(CAROL, posted(slack, quick["id"]), "approve")
    decided(slack, quick["id"])

    message = decided(slack, stale["id"])
    assert message.blocks[0]["text"]["text"] == "Expired: batch"
    assert not any(b["type"] == "actions" for b in message.blocks)
    # Said once: ":hourglass: *Expired* (no decision within 6s) on <date>", no reason below.
    assert "*Expired* (no decision within 6s) on <!date^" in outcome(message)
    assert "Reason" not in outcome(message)
    assert rotor.approvals[stale["id"]]["reason"] == "Expired: no decision within 6s"
    dms = wait_until(lambda: len(slack.dms_for(MALLORY)) == 2 and slack.dms_for(MALLORY))
    assert any("Expired" in dm.text for dm in dms)
    assert rotor.decisions == [(quick["id"], "approved"), (stale["id"], "rejected")]

    rows = [json.loads(line) for line in audit(first, tmp_path).splitlines()]
    assert [(r["approval_id"], r["outcome"]) for r in rows] == [
        (quick["id"], "approved"),
        (stale["id"], "expired"),
    ]
    assert [r["decided_in"] for r in rows] == ["slack", "expiry"]
    assert rows[0]["decided_by"] == CAROL and rows[0]["requester"] == MALLORY
    assert rows[1]["reason"] == "Expired: no decision within 6s"
    table = list(csv.DictReader(io.StringIO(audit(first, tmp_path, "csv"))))
    assert [r["outcome"] for r in table] == ["approved", "expired"]


def test_two_final_votes_at_once_decide_every_approval_exactly_once(service, slack, rotor):
    # Ten approvals needing two; Carol and Dave click each at the same moment.
    approvals = [rotor.enqueue("payments", {"amount": n})["id"] for n in range(10)]
    messages = {a: posted(slack, a) for a in approvals}

    def click(pair):
        approval_id, user = pair
        return slack.click(user, messages[approval_id], "approve").status_code

    pairs = [(a, user) for a in approvals for user in (CAROL, DAVE)]
    with ThreadPoolExecutor(len(pairs)) as pool:
        assert set(pool.map(click, pairs)) == {200}
    wait_until(
        lambda: all(rotor.status(a) == "approved" for a in approvals), 20, "every approval decided"
    )
    assert sorted(rotor.decision_calls) == sorted((a, "approved") for a in approvals)


def test_a_final_vote_that_meets_another_decision_leaves_nothing_stuck(service, slack, rotor):
    # Carol's reject is under way at Rotor when Dave's vote would complete the quorum; Rotor
    # then refuses the reject. Dave's vote must not be left counted with nothing decided.
    approval = rotor.enqueue("payments", {"amount": 1})
    message = posted(slack, approval["id"])
    slack.click(ERIN, message, "approve")
    wait_until(lambda: "1 of 2" in block_text(slack.find(approval["id"])[0], "quorum"))
    rotor.hold_decisions = True
    rotor.fail_next = 0
    slack.click(CAROL, message, "reject")
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the modal")
    slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "no"}})
    wait_until(lambda: rotor.decision_calls, what="the reject at Rotor")
    slack.click(DAVE, message, "approve")
    wait_until(lambda: notices(slack, DAVE), what="Dave told")
    rotor.refuse_decisions = (503, "UNAVAILABLE", "try later")
    rotor.hold_decisions = False
    wait_until(lambda: notices(slack, CAROL), what="Carol told")
    rotor.refuse_decisions = None
    # Dave clicks again: the quorum is met by his click now, and Rotor approves once.
    slack.click(DAVE, message, "approve")
    wait_until(lambda: rotor.status(approval["id"]) == "approved", what="approved")
    assert [c for c in rotor.decision_calls if c[1] == "approved"] == [(approval["id"], "approved")]


def test_a_click_past_the_expiry_expires_it_instead_of_deciding(start_service, slack, rotor):
    # The sweep runs once an hour here: only the click itself can see the expiry.
    policy = make_policy(check_every="1h", queues=EXPIRING.replace('"6s"', '"2s"'))
    start_service(policy)
    approval = rotor.enqueue("batch", {"owner": "nobody"})
    message = posted(slack, approval["id"])
    time.sleep(2.5)
    slack.click(CAROL, message, "approve")
    wait_until(lambda: notices(slack, CAROL), what="Carol told")
    assert notices(slack, CAROL) == [
        "This approval expired: no decision within 2s, so it was rejected as expired. "
        "Nothing else was decided."
    ]
    assert rotor.decision_calls == [(approval["id"], "rejected")]
    assert rotor.approvals[approval["id"]]["reason"] == "Expired: no decision within 2s"
    assert "*Expired*" in outcome(decided(slack, approval["id"]))


def test_the_audit_says_whether_a_job_decided_outside_slack_ran(service, slack, rotor, tmp_path):
    ran = rotor.enqueue("ops", {"n": 1})
    stopped = rotor.enqueue("ops", {"n": 2})
    posted(slack, ran["id"]), posted(slack, stopped["id"])
    rotor.decide_outside(ran["id"], "approved")
    rotor.decide_outside(stopped["id"], "rejected", "Auto-rejected: timeout policy")
    decided(slack, ran["id"]), decided(slack, stopped["id"])
    rows = audit_rows(service, tmp_path)
    assert (rows[ran["id"]]["outcome"], rows[ran["id"]]["decided_in"]) == (
        "approved",
        "outside_slack",
    )
    assert rows[stopped["id"]]["outcome"] == "rejected"
    assert rows[stopped["id"]]["decided_in"] == "outside_slack"
    assert rows[stopped["id"]]["reason"] == "Auto-rejected: timeout policy"


def test_a_quorum_reminder_skips_who_approved_and_says_the_progress(start_service, slack, rotor):
    slack.usergroups = {"S0FINANCE": [DAVE, ERIN]}
    start_service(make_policy(after="2s", every="1h", check_every="200ms", queues=QUORUM))
    approval = rotor.enqueue("payments", {"amount": 3})
    message = posted(slack, approval["id"])
    slack.click(CAROL, message, "approve")
    wait_until(lambda: "1 of 2" in block_text(slack.find(approval["id"])[0], "quorum"))
    (reminder,) = wait_until(lambda: slack.replies(message), 15, "the reminder")
    assert reminder.text.startswith("<!subteam^S0FINANCE>: ")
    assert CAROL not in reminder.text and "1 of 2 approvals so far." in reminder.text
