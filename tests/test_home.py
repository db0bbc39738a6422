"""The Home tab: what waits on each person, clicks from there, kept current and paced."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from app.config import QueueRules
from app.db.approvals import Waiting
from app.db.models import Approval
from app.sandbox.slack_objects import Fault, check_view
from app.slack.blocks.home import VIEW_BLOCKS_MAX, Shown, fit, home_view
from app.slack.blocks.parts import Quorum
from tests.conftest import CAROL, DAVE, MALLORY, make_policy, posted, stored, wait_until
from tests.test_decisions import decided

ERIN = "U0ERIN"
QUEUES = """
[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["U0CAROL", "S0FINANCE"]
required_approvals = 2
requester = "requestedBy"
title = "Pay {amount} to {to}"
fields = ["amount", "to"]

[[queues]]
name = "ops"
channel = "C0OPS"

[[queues]]
name = "secret"
channel = "C0APPROVALS"
approvers = ["U0CAROL"]
"""


@pytest.fixture
def service(start_service, slack):
    slack.usergroups = {"S0FINANCE": [DAVE, ERIN]}
    return start_service(make_policy(queues=QUEUES))


PLAIN = QueueRules(queue="payments")


def texts(blocks) -> str:
    """Every text on the tab, joined (mrkdwn as sent)."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if isinstance(value.get("text"), str):
                found.append(value["text"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(blocks)
    return "\n".join(found)


def home(slack, user, containing: str = "", timeout: float = 10.0):
    """`user`'s Home tab once it shows `containing`."""
    return wait_until(
        lambda: (tab := slack.homes.get(user)) and containing in texts(tab.blocks) and tab,
        timeout,
        what=f"{user}'s Home tab to show {containing!r}",
    )


def listed(tab) -> list[str]:
    return [
        b["block_id"].removeprefix("item-") for b in tab.blocks if b["block_id"].startswith("item-")
    ]


def test_each_person_sees_what_they_may_decide(service, slack, rotor):
    pay = rotor.enqueue("payments", {"amount": "120 EUR", "to": "ACME", "requestedBy": ERIN})
    ops = rotor.enqueue("ops", {"host": "db-1"})
    secret = rotor.enqueue("secret", {"k": 1})
    for approval in (pay, ops, secret):
        posted(slack, approval["id"])

    seen = {}
    for user in (CAROL, DAVE, ERIN, MALLORY):
        assert slack.open_home(user).status_code == 200
        seen[user] = home(slack, user, "wait")
    # Oldest first; Carol by id, Dave through the group, Erin not her own request, Mallory
    # only the queue with no approvers.
    assert listed(seen[CAROL]) == [pay["id"], ops["id"], secret["id"]]
    assert listed(seen[DAVE]) == [pay["id"], ops["id"]]
    assert listed(seen[ERIN]) == [ops["id"]]
    assert listed(seen[MALLORY]) == [ops["id"]]
    carol = texts(seen[CAROL].blocks)
    assert "3 approvals wait on you" in carol
    assert "*Pay 120 EUR to ACME*" in carol and "Amount: 120 EUR · To: ACME" in carol
    assert "0 of 2 approvals" in carol and f"by <@{ERIN}>" in carol
    assert "<!date^" in carol and "{ago}" in carol  # Slack counts the age: the text stays put
    # A link to each channel message, in Slack's permalink format.
    link = next(
        e["url"]
        for b in seen[CAROL].blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("url")
    )
    message = slack.find(pay["id"])[0]
    assert link == f"{slack.base_url}/archives/C0FINANCE/p{message.ts.replace('.', '')}"
    # The Messages tab is not the Home tab.
    before = slack.count("views.publish")
    slack._send_event({"type": "app_home_opened", "user": CAROL, "tab": "messages"})
    slack.open_home(CAROL)  # and opening it again with nothing new publishes nothing
    assert slack.open_home(DAVE).status_code == 200
    # /approvals mine lists the same set in the channel (the answer comes after the events).
    slack.slash(ERIN, "C0OPS", "mine")
    (answer,) = wait_until(lambda: slack.ephemerals_for(ERIN), what="/approvals mine")
    assert listed(answer) == [ops["id"]] and "waiting on you" in texts(answer.blocks)
    slack.slash(CAROL, "C0OPS", "mine payments")
    (answer,) = wait_until(lambda: slack.ephemerals_for(CAROL), what="/approvals mine payments")
    assert listed(answer) == [pay["id"]]
    assert slack.count("views.publish") == before


def test_clicks_on_the_home_tab_decide_and_the_tab_follows(service, slack, rotor):
    pay = rotor.enqueue("payments", {"amount": 9, "to": "X", "requestedBy": ERIN})
    ops = rotor.enqueue("ops", {"host": "db-2"})
    posted(slack, pay["id"]), posted(slack, ops["id"])
    slack.open_home(CAROL), slack.open_home(DAVE)
    home(slack, DAVE, "2 approvals")

    # Carol's approval counts towards the quorum: it leaves her tab, Dave's shows progress.
    slack.click(CAROL, home(slack, CAROL, "2 approvals"), "approve", pay["id"])
    tab = home(slack, CAROL, "counts; it waits for more approvals")
    assert listed(tab) == [ops["id"]]
    # ...and says who has approved.
    assert f"1 of 2 approvals:* <@{CAROL}>" in texts(home(slack, DAVE, "1 of 2 approvals").blocks)

    # A refusal appears at the top of the tab (no response_url to answer on).
    rotor.down_status = 503
    slack.click(CAROL, tab, "approve", ops["id"])
    tab = home(slack, CAROL, "Nothing was decided")
    rotor.down_status = None
    assert tab.blocks[0]["block_id"] == "notice" and listed(tab) == [ops["id"]]

    # A form Slack would not open (the click came too late) is said on the tab too.
    slack.fail(Fault("views.open", error="expired_trigger_id", status=200))
    slack.click(CAROL, tab, "reject", ops["id"])
    tab = home(slack, CAROL, "Could not open the form")

    # Reject from the tab: the same reason modal; the decided item leaves both tabs.
    slack.click(CAROL, tab, "reject", ops["id"])
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the reason modal")
    slack.submit_view(CAROL, view_id, {"reason": {"reason_input": "not now"}})
    wait_until(lambda: rotor.status(ops["id"]) == "rejected")
    tab = home(slack, CAROL, "Rejected")
    assert listed(tab) == [] and "Nothing waits on you" in texts(tab.blocks)

    # Dave's final approval from his tab decides the job in Rotor, once.
    slack.click(DAVE, home(slack, DAVE, "1 of 2"), "approve", pay["id"])
    wait_until(lambda: rotor.status(pay["id"]) == "approved")
    decided(slack, pay["id"])
    assert listed(home(slack, DAVE, "Nothing waits on you")) == []
    assert rotor.decision_calls.count((pay["id"], "approved")) == 1


def test_open_tabs_follow_new_approvals_paced_and_never_for_nothing(service, slack, rotor):
    slack.open_home(CAROL)
    home(slack, CAROL, "Nothing waits on you")
    first = slack.count("views.publish")
    burst = [rotor.enqueue("ops", {"n": n}) for n in range(20)]
    for approval in burst:
        posted(slack, approval["id"])
    tab = home(slack, CAROL, "20 approvals wait on you")
    assert listed(tab) == [a["id"] for a in burst]
    # A burst of 20 posts is a few publishes, not 20 (changes within a second are one refresh).
    publishes = slack.count("views.publish") - first
    assert 1 <= publishes <= 8, publishes
    # Someone who never opened the tab gets none; nothing changes, nothing is published.
    assert DAVE not in slack.homes
    settled = slack.count("views.publish")
    slack.click(DAVE, slack.find(burst[0]["id"])[0], "approve")  # decided in the channel
    decided(slack, burst[0]["id"])
    home(slack, CAROL, "19 approvals wait on you")
    assert slack.count("views.publish") == settled + 1


def test_hundreds_waiting_stay_within_the_block_limit_and_valid():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    waiting = [
        Waiting(f"apv_{n:032x}", queue, start + timedelta(minutes=n), None, channel, f"1.{n}")
        for n, (queue, channel) in enumerate(
            [("ops", "C0OPS")] * 250 + [("payments", "C0FINANCE")] * 37 + [("secret", "C0X")] * 3
        )
    ]
    layout = fit(waiting)
    approvals = {
        w.id: Approval(
            id=w.id,
            job_id="job",
            queue_name=w.queue_name,
            payload={"amount": 1, "to": "<!channel>", "deep": [[[["x" * 5000]]]]},
            created_at=w.created_at,
            channel=w.channel,
            ts=w.ts,
        )
        for w in waiting
    }
    view = home_view(
        layout, lambda i: Shown(approvals[i], PLAIN, Quorum(2, [DAVE]), "https://x/y"), "note"
    ).to_dict()
    check_view(view, "home")  # Slack's rules, as the stand-in enforces them
    assert len(view["blocks"]) <= VIEW_BLOCKS_MAX
    shown = texts(view["blocks"])
    assert "290 approvals wait on you" in shown
    # The oldest queue fills the tab; the others are counted where they live.
    assert f"… and {250 - len(layout.groups[0].shown)} more in <#C0OPS>" in shown
    assert "… and 37 more in <#C0FINANCE>" in shown and "… and 3 more in <#C0X>" in shown
    assert len(layout.groups[0].shown) >= 40
    assert "<!channel>" not in shown  # payload text is escaped

    # More queues than room even for a line each: the rest are counted together.
    many = [Waiting(f"apv_{n:032x}", f"q{n}", start, None, "C1", "1.1") for n in range(60)]
    layout = fit(many)
    view = home_view(layout, lambda i: None).to_dict()
    check_view(view, "home")
    assert "more in other queues" in texts(view["blocks"])
    assert sum(len(g.shown) + g.more for g in layout.groups) + layout.other_queues == 60


def published_views(slack, user) -> list[str]:
    return [
        json.dumps(args["view"] if isinstance(args["view"], dict) else json.loads(args["view"]))
        for method, args in list(slack.calls)
        if method == "views.publish" and args.get("user_id") == user
    ]


def test_replicas_opening_at_once_publish_once(start_service, slack, rotor, database_url):
    slack.usergroups = {"S0FINANCE": [DAVE, ERIN]}
    policy = make_policy(queues=QUEUES)
    replicas = [start_service(policy), start_service(policy)]
    burst = [rotor.enqueue("ops", {"n": n}) for n in range(10)]
    ids = [a["id"] for a in burst]
    wait_until(lambda: all(a.ts for a in stored(database_url, *ids)), what="posts recorded")
    # Slack delivers an event to one replica, but a retried one may reach the other as well:
    # both compute the same view, one of them publishes it.
    with ThreadPoolExecutor(2) as pool:
        urls = [f"{r.url}/slack/events" for r in replicas]
        assert all(
            r.status_code == 200 for r in pool.map(lambda u: slack.open_home(CAROL, u), urls)
        )
    home(slack, CAROL, "10 approvals wait on you")
    time.sleep(2)  # both have handled their event (it takes milliseconds)
    assert len(published_views(slack, CAROL)) == 1
