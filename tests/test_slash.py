"""The /approvals slash command: filters, paging, buttons, help, and a slow Rotor."""

from __future__ import annotations

import time

from tests.conftest import CAROL, DAVE, MALLORY, PAYMENTS, make_policy, wait_until


def listing(slack, user, count=1):
    """The newest ephemeral list the user sees, once `count` have arrived."""
    wait_until(lambda: len(slack.ephemerals_for(user)) >= count, what="the list")
    return slack.ephemerals_for(user)[-1]


def listed_ids(ephemeral) -> list[str]:
    return [
        b["block_id"].removeprefix("item-")
        for b in ephemeral.blocks
        if b["block_id"].startswith("item-")
    ]


def test_lists_pending_newest_first_with_buttons(service, slack, rotor):
    older = rotor.create("ops", {"n": 1})
    newer = rotor.create("payments", {"n": 2})
    rotor.decide_outside(rotor.create("ops", {"n": 3})["id"], "approved")
    response = slack.slash(CAROL, "C0OPS", "")
    assert response.status_code == 200
    shown = listing(slack, CAROL)
    assert listed_ids(shown) == [newer["id"], older["id"]]
    assert "Pending approvals" in shown.blocks[0]["text"]["text"]
    decide_blocks = [b for b in shown.blocks if b["block_id"].startswith("decide-")]
    assert len(decide_blocks) == 2


def test_filters_by_status_and_queue(service, slack, rotor):
    a = rotor.create("ops", {})
    b = rotor.create("payments", {})
    c = rotor.create("payments", {})
    rotor.decide_outside(a["id"], "approved")
    rotor.decide_outside(b["id"], "rejected", "no")
    slack.slash(CAROL, "C0OPS", "approved")
    assert listed_ids(listing(slack, CAROL, 1)) == [a["id"]]
    slack.slash(CAROL, "C0OPS", "payments rejected")
    shown = listing(slack, CAROL, 2)
    assert listed_ids(shown) == [b["id"]]
    assert not any(blk["block_id"].startswith("decide-") for blk in shown.blocks)
    slack.slash(CAROL, "C0OPS", "pending payments")
    assert listed_ids(listing(slack, CAROL, 3)) == [c["id"]]
    slack.slash(CAROL, "C0OPS", "approved payments")
    assert "Nothing here." in listing(slack, CAROL, 4).blocks[0]["text"]["text"]


def test_more_walks_the_pages(service, slack, rotor):
    created = [rotor.create("ops", {"i": i})["id"] for i in range(35)]
    slack.slash(CAROL, "C0OPS", "")
    first = listing(slack, CAROL)
    seen = listed_ids(first)
    assert len(seen) == 15
    page = first
    for expected_total in (30, 35):
        shown_before = listed_ids(page)
        slack.click(CAROL, page, "list_more")
        page = wait_until(
            lambda before=shown_before: (
                (p := slack.ephemerals_for(CAROL)[-1]) and listed_ids(p) != before and p
            ),
            what="the next page",
        )
        seen = seen + listed_ids(page)
        assert len(seen) == expected_total
    assert seen == list(reversed(created))
    assert not any(b["block_id"].startswith("list-more") for b in page.blocks)
    assert len(slack.ephemerals_for(CAROL)) == 1  # each page replaced the last


def test_buttons_in_the_list_decide(service, slack, rotor):
    approval = rotor.enqueue("ops", {"from": "list"})
    slack.slash(CAROL, "C0OPS", "")
    shown = listing(slack, CAROL)
    slack.click(CAROL, shown, "approve", value=approval["id"])
    wait_until(lambda: rotor.status(approval["id"]) == "approved")
    said = wait_until(lambda: [e.text for e in slack.ephemerals_for(CAROL) if "Approved" in e.text])
    assert said == [f"Approved job `{approval['jobId']}` on `ops`."]


def test_list_button_on_an_approval_never_seen_records_and_decides_it(service, slack, rotor):
    missed = rotor.create("ops", {"webhook": "lost"})  # no webhook was ever delivered
    vanished = rotor.create("ops", {"deleted": "later"})
    slack.slash(CAROL, "C0OPS", "")
    shown = listing(slack, CAROL)
    # Rotor down while the listed approval is loaded: nothing is recorded or decided.
    rotor.down_status = 503
    slack.click(CAROL, shown, "approve", value=missed["id"])
    wait_until(lambda: len(slack.ephemerals_for(CAROL)) == 2, what="the notice")
    assert slack.ephemerals_for(CAROL)[-1].text.startswith("Could not reach Rotor (")
    assert slack.ephemerals_for(CAROL)[-1].text.endswith("Nothing changed.")
    rotor.down_status = None
    # Rotor no longer knows a listed approval: said so, nothing recorded.
    del rotor.approvals[vanished["id"]]
    slack.click(CAROL, shown, "approve", value=vanished["id"])
    wait_until(lambda: len(slack.ephemerals_for(CAROL)) == 3, what="the second notice")
    assert slack.ephemerals_for(CAROL)[-1].text == (
        f"Rotor does not know approval `{vanished['id']}`."
    )
    assert rotor.decision_calls == [] and slack.find(missed["id"]) == []
    slack.click(CAROL, shown, "approve", value=missed["id"])
    wait_until(lambda: rotor.status(missed["id"]) == "approved")
    message = wait_until(lambda: slack.find(missed["id"]), what="the message of the approval")[0]
    wait_until(lambda: "Approved" in slack.find(missed["id"])[0].text)
    assert message.channel == "C0APPROVALS"


def test_help_and_bad_input(service, slack, rotor):
    slack.slash(CAROL, "C0OPS", "help")
    assert "/approvals" in listing(slack, CAROL).text
    slack.slash(CAROL, "C0OPS", "pending two queues")
    assert "/approvals" in listing(slack, CAROL, 2).text


def test_slow_rotor_is_acked_within_three_seconds(service, slack, rotor):
    rotor.create("ops", {})
    rotor.latency = 4
    started = time.monotonic()
    assert slack.slash(CAROL, "C0OPS", "").status_code == 200
    assert time.monotonic() - started < 3
    assert listed_ids(listing(slack, CAROL, 1)) != []


def test_rotor_down_says_so(service, slack, rotor):
    rotor.down_status = 503
    slack.slash(CAROL, "C0OPS", "")
    assert "Could not list approvals" in listing(slack, CAROL).text


TITLED = make_policy(
    queues=PAYMENTS
    + """title = "Pay {amount} {currency} to {beneficiary.name}"
fields = ["amount", "beneficiary.name"]
mask = ["beneficiary.iban"]
"""
)


def test_list_shows_only_queues_the_person_may_decide(start_service, slack, rotor):
    start_service(TITLED)
    ops = rotor.create("ops", {"n": 1})  # a queue without approvers: anyone may decide
    pay = rotor.create(
        "payments",
        {"amount": 5, "currency": "EUR", "beneficiary": {"name": "Ann", "iban": "DE89X"}},
    )
    slack.slash(MALLORY, "C0OPS", "")
    shown = listing(slack, MALLORY)
    assert listed_ids(shown) == [ops["id"]]
    # Nothing says that something was left out, nor how much.
    assert shown.blocks[0]["text"]["text"] == "*Pending approvals*"
    assert "Ann" not in str(shown.blocks) and "payments" not in str(shown.blocks)
    slack.slash(DAVE, "C0OPS", "payments")  # a member of the approver group
    shown = listing(slack, DAVE)
    assert listed_ids(shown) == [pay["id"]]
    item = next(b for b in shown.blocks if b["block_id"] == f"item-{pay['id']}")
    assert item["text"]["text"].startswith("*Pay 5 EUR to Ann*")
    assert "Beneficiary name: Ann" in item["text"]["text"] and "DE89X" not in str(shown.blocks)
    # Approving from the list names the job by its title, and the list is shown again in its
    # place: the approved job is no longer pending there, so no live buttons are left on it.
    slack.click(DAVE, shown, "approve", value=pay["id"])
    said = wait_until(lambda: [e.text for e in slack.ephemerals_for(DAVE) if "Approved" in e.text])
    assert said[0].startswith("Approved *Pay 5 EUR to Ann* (job ")
    assert listed_ids(wait_until(lambda: not listed_ids(shown) and shown)) == []
    assert "Nothing here." in shown.blocks[0]["text"]["text"]
    # A reject from a list, through its modal, shows the list again as well.
    other = rotor.create("ops", {"n": 2})
    slack.slash(DAVE, "C0OPS", "ops")
    shown = wait_until(
        lambda: (
            other["id"] in listed_ids(slack.ephemerals_for(DAVE)[-1])
            and (slack.ephemerals_for(DAVE)[-1])
        )
    )
    slack.click(DAVE, shown, "reject", value=other["id"])
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the modal")
    slack.submit_view(DAVE, view_id, {"reason": {"reason_input": "not now"}})
    wait_until(lambda: other["id"] not in listed_ids(shown), what="the list shown again")
    assert rotor.status(other["id"]) == "rejected"


def test_a_queue_the_person_may_not_see_is_answered_as_one_that_does_not_exist(
    start_service, slack, rotor
):
    start_service(TITLED)
    rotor.create("payments", {"amount": 5})  # Mallory is no approver of payments
    answers = {}
    for n, word in enumerate(["payments", "nosuchq", "paymnts", "rejcted"], start=1):
        slack.slash(MALLORY, "C0OPS", word)
        answers[word] = listing(slack, MALLORY, n).text.replace(f"`{word}`", "`Q`", 1)
    assert answers["payments"] == answers["nosuchq"] == answers["paymnts"] == answers["rejcted"]
    said, _ = answers["payments"].split("\n\n", 1)  # then the usage
    assert said == "`Q` is neither a status nor a queue I know."  # no "Did you mean `payments`?"
    slack.slash(DAVE, "C0OPS", "paymnts")  # an approver of payments is helped to it
    assert "Did you mean `payments`?" in listing(slack, DAVE).text


def test_unknown_words_and_long_arguments_answer_with_usage(service, slack, rotor):
    rotor.create("ops", {})
    for n, word in enumerate(["bogus", "rejcted", "x" * 3000], start=1):
        slack.slash(CAROL, "C0OPS", word)
        text = listing(slack, CAROL, n).text
        assert "/approvals" in text and "pending" in text, text
        if len(word) < 100:
            assert f"`{word}` is neither a status nor a queue I know" in text
    slack.slash(CAROL, "C0OPS", "paymnts")  # close to a queue of the policy
    assert "Did you mean `payments`?" in listing(slack, CAROL, 4).text
    slack.slash(CAROL, "C0OPS", "pending foo bar")
    assert listing(slack, CAROL, 5).text.startswith("Name one queue at most: `foo bar`")
    slack.slash(CAROL, "C0OPS", "ops")  # a queue Rotor knows, though not in the policy
    assert listed_ids(listing(slack, CAROL, 6)) != []


def test_decided_lists_say_why(service, slack, rotor):
    a = rotor.create("ops", {})
    rotor.decide_outside(a["id"], "rejected", "over budget")
    slack.slash(CAROL, "C0OPS", "rejected")
    item = next(b for b in listing(slack, CAROL).blocks if b["block_id"] == f"item-{a['id']}")
    assert "Rejected\n> over budget" in item["text"]["text"]  # the reason quoted, own line
    assert "just now" in item["text"]["text"] and "ago" not in item["text"]["text"]
