"""Rules on the payload: `[[queues.rules]]` route a large payment to the CFO, with two approvals
and a step-up confirmation, resolved once when the approval arrives (issue: rules)."""

from __future__ import annotations

import json

import pytest

from app.config import ConfigError, QueueRules, parse_policy
from app.payload import typed_matches
from app.rules import Outcome, bind, compile_condition
from tests.conftest import (
    CAROL,
    DAVE,
    MALLORY,
    audit_rows,
    make_policy,
    posted,
    stored,
    wait_until,
)
from tests.test_decisions import decided, notices, outcome

CFO, CFO_2 = "U0A1", "U0A2"
RULED = """
[[queues]]
name = "payments"
approvers = ["U0CAROL", "S0FINANCE"]

  [[queues.rules]]
  when = "payload.amount >= 10000"
  name = "large payment"
  approvers = ["U0A1", "U0A2"]
  required_approvals = 2
  channel = "C0FINANCE"
  confirm = "amount"
"""


def message_text(message) -> str:
    return json.dumps(message.blocks)


# --- Conditions, pure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("payload.amount >", "not valid CEL"),
        ("amount > 5", "unknown variable amount"),
        ("payload.items.exists(i, i.price > 100)", "exists() is not allowed"),
    ],
)
def test_a_condition_that_cannot_be_compiled_is_one_line_naming_its_queue_and_rule(when, problem):
    text = RULED.replace("payload.amount >= 10000", when.replace('"', '\\"'))
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, source="rotor-slack.toml")
    (line,) = caught.value.problems
    assert line.startswith("rotor-slack.toml: queues[0]: queue 'payments', rule 'large payment':")
    assert problem in line and "\n" not in line


def test_conditions_fail_closed_and_never_run_unbounded():
    large = compile_condition("payload.amount >= 10000")
    assert large.check(bind({"amount": 48_500}, "payments", "j")) is Outcome.HOLDS
    assert large.check(bind({"amount": 50}, "payments", "j")) is Outcome.FAILS
    for unreadable in ({"amount": "a lot"}, {}, {"amount": None}, [1], "text"):
        assert large.check(bind(unreadable, "payments", "j")) is Outcome.UNCHECKED
    deep: dict = {}
    inner = deep
    for _ in range(300):  # deeper than the webhook allows: never handed to the evaluator
        inner["a"] = inner = {}
    assert large.check(bind(deep, "payments", "j")) is Outcome.UNCHECKED
    # A non-boolean answer is not "false".
    assert compile_condition("payload.amount").check(bind({"amount": 3}, "q", "j")) is (
        Outcome.UNCHECKED
    )


def test_a_condition_is_handed_only_the_payload_keys_it_names():
    named = compile_condition("payload.a.b > 1 && payload.c == 'x'")
    assert named.keys == {"a", "c"}
    assert compile_condition("size(payload) > 1").keys is None  # the whole payload, then
    assert compile_condition('payload["a"] > 1').keys is None
    huge = {"a": {"b": 2}, "c": "x", "rows": [{"n": i} for i in range(50_000)]}
    assert named.check(bind(huge, "q", "j", named.keys)) is Outcome.HOLDS
    assert named.check(bind({"a": {"b": 0}, "c": "x"}, "q", "j", named.keys)) is Outcome.FAILS


def test_the_first_rule_that_holds_applies_and_only_its_keys_override():
    policy = parse_policy(make_policy(queues=RULED))
    small = policy.resolve("payments", {"amount": 50}, "j")
    assert (small.rule, small.approvers, small.channel) == (
        None,
        ("U0CAROL", "S0FINANCE"),
        "C0APPROVALS",
    )
    large = policy.resolve("payments", {"amount": 48_500}, "j")
    assert large.rule == "large payment" and not large.unchecked
    assert (large.approvers, large.required_approvals, large.channel) == (
        (CFO, CFO_2),
        2,
        "C0FINANCE",
    )
    assert large.confirm == "amount" and large.requester is None  # not written: the queue's
    unclear = policy.resolve("payments", {"amount": "a lot"}, "j")
    assert unclear.rule == "large payment" and unclear.unchecked
    # Kept as JSON with the approval and read back the same.
    assert policy.rules_of("payments", large.model_dump(mode="json")) == large


@pytest.mark.parametrize(
    ("typed", "expected", "matches"),
    [
        ("48,500", 48500, True),
        ("48500.00", 48500, True),
        (" 48 500 ", 48500.0, True),
        ("48500", "48,500.00", True),
        ("48501", 48500, False),
        ("4850", 48500, False),
        ("ACME  corp", "Acme Corp", True),
        ("Acme", "Acme Corp", False),
        ("", "", False),
        ("1", True, False),
        ("x", None, False),
    ],
)
def test_a_typed_value_is_compared_as_a_number_when_it_is_one(typed, expected, matches):
    assert typed_matches(typed, expected) is matches


# --- The service ---------------------------------------------------------------------------------


@pytest.fixture
def ruled(start_service):
    return start_service(make_policy(queues=RULED))


def test_both_sides_of_the_threshold(ruled, slack, rotor):
    small = rotor.enqueue("payments", {"amount": 50, "to": "Acme"})
    large = rotor.enqueue("payments", {"amount": 48_500, "to": "Globex"})
    small_message, large_message = posted(slack, small["id"]), posted(slack, large["id"])
    assert small_message.channel == "C0APPROVALS" and "large payment" not in message_text(
        small_message
    )
    assert large_message.channel == "C0FINANCE"
    assert "*Rule:* large payment: 2 approvals from <@U0A1> <@U0A2>" in message_text(large_message)

    # Below the threshold, the queue's approvers decide with one click.
    slack.click(CAROL, small_message, "approve")
    wait_until(lambda: rotor.status(small["id"]) == "approved")
    # Above it, the queue's approvers are refused: the rule names others.
    slack.click(CAROL, large_message, "approve")
    wait_until(lambda: notices(slack, CAROL), what="Carol told")
    assert "not an approver" in notices(slack, CAROL)[-1] and "<@U0A1>" in notices(slack, CAROL)[-1]
    assert rotor.status(large["id"]) == "pending" and rotor.decision_calls == [
        (small["id"], "approved")
    ]
    (row,) = stored(ruled.env["DATABASE_URL"], large["id"])
    assert row.rules["rule"] == "large payment" and row.rules["required_approvals"] == 2


def test_step_up_wrong_then_right_and_the_quorum(ruled, slack, rotor):
    large = rotor.enqueue("payments", {"amount": 48_500, "to": "Globex"})
    message = posted(slack, large["id"])
    assert "confirm" not in json.dumps(message.blocks)  # no one-tap dialog: the form replaces it

    def confirm_form(user):
        slack.click(user, message, "approve")
        return wait_until(
            lambda: next(((i, v) for i, v in slack.views.items() if v["user"] == user), None),
            what=f"the confirm form for {user}",
        )

    view_id, view = confirm_form(CFO)
    assert view["callback_id"] == "confirm_approval"
    shown = json.dumps(view["blocks"])
    assert "48500" not in shown and "48,500" not in shown  # the form does not give it away
    wrong = slack.submit_view(CFO, view_id, {"confirm": {"confirm_input": "4,850"}})
    assert wrong.json()["response_action"] == "errors"
    assert "not this job's amount" in wrong.json()["errors"]["confirm"]
    assert rotor.decision_calls == [] and stored(ruled.env["DATABASE_URL"], large["id"])[0]

    right = slack.submit_view(CFO, view_id, {"confirm": {"confirm_input": "48,500.00"}})
    assert right.status_code == 200 and not right.content
    wait_until(lambda: "1 of 2 approvals" in message_text(slack.find(large["id"])[0]))
    assert rotor.decision_calls == []  # a quorum of two: one is not enough

    view_id, _ = confirm_form(CFO_2)
    slack.submit_view(CFO_2, view_id, {"confirm": {"confirm_input": "48500"}})
    wait_until(lambda: rotor.status(large["id"]) == "approved")
    assert "<@U0A1>" in outcome(decided(slack, large["id"]))


def test_an_approve_click_alone_never_decides_under_a_confirm_rule(ruled, slack, rotor):
    large = rotor.enqueue("payments", {"amount": 48_500})
    message = posted(slack, large["id"])
    for _ in range(3):  # clicks, however many, only open the form
        slack.click(CFO, message, "approve")
    wait_until(lambda: slack.count("views.open") == 3, what="three forms")
    view_id = next(iter(slack.views))
    empty = slack.submit_view(CFO, view_id, {"confirm": {"confirm_input": "  "}})
    assert empty.json()["response_action"] == "errors"
    assert rotor.decision_calls == [] and rotor.status(large["id"]) == "pending"


def test_fail_closed_says_why_the_rule_applied(ruled, slack, rotor):
    unclear = rotor.enqueue("payments", {"amount": "a lot"})
    message = posted(slack, unclear["id"])
    assert message.channel == "C0FINANCE"
    assert "condition could not be checked" in message_text(message)
    slack.click(DAVE, message, "approve")  # a queue approver, not the rule's
    wait_until(lambda: notices(slack, DAVE), what="Dave told")
    assert rotor.status(unclear["id"]) == "pending"


def test_a_policy_change_applies_to_new_approvals_only_and_the_audit_names_the_rule(
    start_service, slack, rotor, tmp_path
):
    first = start_service(make_policy(queues=RULED))
    before = rotor.enqueue("payments", {"amount": 48_500})
    before_message = posted(slack, before["id"])
    first.stop()
    # The rule is gone from the file: what was posted under it keeps it.
    second = start_service(make_policy(queues=RULED.split("  [[queues.rules]]")[0]))
    after = rotor.enqueue("payments", {"amount": 48_500})
    after_message = posted(slack, after["id"])
    assert after_message.channel == "C0APPROVALS" and "Rule" not in message_text(after_message)

    slack.click(CAROL, before_message, "approve", app_url=f"{second.url}/slack/events")
    wait_until(lambda: notices(slack, CAROL), what="Carol refused")
    assert "not an approver" in notices(slack, CAROL)[-1]
    slack.click(CAROL, after_message, "approve", app_url=f"{second.url}/slack/events")
    wait_until(lambda: rotor.status(after["id"]) == "approved")

    rotor.decide_outside(before["id"], "rejected", "Too large")
    decided(slack, before["id"])
    rows = audit_rows(second, tmp_path)
    assert rows[before["id"]]["rule"] == "large payment"
    assert rows[after["id"]]["rule"] is None


def test_lists_and_home_follow_the_rule(ruled, slack, rotor):
    large = rotor.enqueue("payments", {"amount": 48_500})
    posted(slack, large["id"])
    slack.slash(MALLORY, "C0APPROVALS", "pending payments")
    slack.slash(CFO, "C0APPROVALS", "pending payments")
    cfo_list = wait_until(lambda: slack.ephemerals_for(CFO), what="the CFO's list")[-1]
    assert "large payment" in json.dumps(cfo_list.blocks) and large["id"] in json.dumps(
        cfo_list.blocks
    )
    mallory = wait_until(lambda: slack.ephemerals_for(MALLORY), what="Mallory's answer")[-1]
    assert large["id"] not in json.dumps(mallory.blocks) + mallory.text
    slack.open_home(CFO)
    tab = wait_until(lambda: slack.homes.get(CFO), what="the CFO's Home tab")
    assert "large payment" in json.dumps(tab.blocks)


def test_rules_resolve_once_with_defaults_for_a_queue_without_rules():
    policy = parse_policy(make_policy())
    assert policy.resolve("ops", {"amount": 1e9}, "j") == policy.rules_for("ops")
    assert policy.rules_of("ops", None) == policy.rules_for("ops")
    assert policy.rules_of("ops", {"queue": "ops", "from_a_later_version": 1}) == (
        policy.rules_for("ops")  # what cannot be read back falls to today's queue keys
    )
    assert QueueRules(queue="x").deciders == (None, None)
