"""Rendering stays bounded and within Slack's limits, whatever the payload and the text: a bounded
walk of megabyte payloads, block ids outside text cannot collide, sizes measured as sent (after
escaping, emoji counted as Slack may), reasons quoted on lines of their own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import errors
from app.config import QueueRules
from app.db.approvals import Waiting
from app.db.models import Approval, Status
from app.interactions.notices import notice
from app.sandbox.slack_objects import SlackError, check_view, slack_len, validate_blocks
from app.slack.blocks.approval import approval_message, outcome_line, requester_text
from app.slack.blocks.home import Shown, fit, home_view
from app.slack.blocks.listing import ListItem, ListQuery, approvals_list, decided_line
from app.slack.blocks.modals import payload_modal
from app.slack.blocks.parts import Quorum
from app.slack.blocks.text import clip_mrkdwn, escaped, one_line, preview, quoted
from tests.conftest import CAROL, OPS, make_policy, posted, wait_until
from tests.test_decisions import buttons, decided, outcome
from tests.test_home import home, listed

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EMOJI = "👨‍👩‍👧"  # three people joined by zero-width joiners: 8 UTF-16 units, 5 code points
HOSTILE = st.lists(
    st.sampled_from(["&", "<", ">", "😀", EMOJI, "`", "*", "é", " ", "\n", "\u202e"]), max_size=40
).map("".join)


def make(payload, queue="payments", job="job_1", n: int = 0, **fields) -> Approval:
    return Approval(
        id=f"apv_{n:032x}",
        job_id=job,
        queue_name=queue,
        payload=payload,
        created_at=NOW - timedelta(hours=2, minutes=-n),
        channel="C0FINANCE",
        ts=f"1.{n}",
        **fields,
    )


def rejected(reason: str, **fields) -> Approval:
    return make(
        {}, status=Status.REJECTED, decided_by=CAROL, decided_at=NOW, reason=reason, **fields
    )


def tab(approvals: list[Approval], rules=None, notice_text=None) -> dict:
    """The Home tab showing `approvals`, as the view Slack is sent."""
    waiting = [
        Waiting(a.id, a.queue_name, a.created_at, None, a.channel or "C0X", a.ts or "1.1")
        for a in approvals
    ]
    by_id = {a.id: a for a in approvals}

    def shown(approval_id: str) -> Shown:
        approval = by_id[approval_id]
        return Shown(approval, rules or QueueRules(queue=approval.queue_name), Quorum(), None)

    return home_view(fit(waiting), shown, notice_text).to_dict()


# --- Bounded rendering (issue 25, point 3) -------------------------------------------------


class Tripwire(list):
    """A list that fails the test when iterated past its first `safe` items: rendering must
    cut a payload before walking it, so a megabyte payload costs what its preview shows."""

    def __init__(self, items, safe: int) -> None:
        super().__init__(items)
        self.safe = safe

    def __iter__(self):
        for i, item in enumerate(super().__iter__()):
            if i >= self.safe:
                raise AssertionError(f"walked past item {self.safe} of {len(self)}")
            yield item


def huge(safe: int) -> dict:
    """A million rows, with what the templates name before and after them."""
    return {"amount": 5, "to": "ACME", "rows": Tripwire(range(1_000_000), safe), "ref": {"id": 7}}


TEMPLATED = QueueRules(
    queue="payments", title="Pay {amount} to {to} (ref {ref.id})", fields=["amount", "ref.id"]
)


def test_rendering_walks_no_more_of_a_payload_than_it_shows():
    approval = make(huge(safe=5_000))
    message = approval_message(approval, TEMPLATED)
    rendered = message.blocks_json()
    validate_blocks(rendered)
    # The template's paths are found past the cut, the preview is cut, the rest is a click away.
    assert rendered[0]["text"]["text"] == "Pay 5 to ACME (ref 7)"
    assert [f["text"] for f in rendered[1]["fields"]] == ["*Amount*\n5", "*Ref id*\n7"]
    assert "view_payload" in buttons(SimpleNamespace(blocks=rendered))
    assert preview(approval.payload)[1] and len(one_line(approval.payload)) <= 120

    view = tab([approval], TEMPLATED)
    check_view(view, "home")
    assert "Pay 5 to ACME (ref 7)" in json.dumps(view, ensure_ascii=False)
    assert "Amount: 5 · Ref id: 7" in json.dumps(view, ensure_ascii=False)

    item = ListItem(approval.id, "payments", "j", "pending", approval.payload, NOW, rules=TEMPLATED)
    validate_blocks([b.to_dict() for b in approvals_list([item], ListQuery(), None, NOW, 0)])

    # The full-payload modal shows up to 150,000 characters: it walks about that far.
    modal = payload_modal(make(huge(safe=200_000))).to_dict()
    check_view(modal, "modal")
    assert "rest of the payload is not shown" in json.dumps(modal["blocks"][-1])


def test_a_cut_walk_still_masks_what_it_shows():
    secret = "4111 1111 1111 1111"
    payload = {"pad": "x" * 2470 + " card " + secret + " " + "y" * 5000, "password": "hunter2"}
    text, cut = preview(payload)
    assert cut and "1111 1111" not in text and "hunter2" not in text
    # A dict too big to scan for a header's name has its value keys masked as a header's.
    headers = {f"k{n}": n for n in range(300)} | {"value": "s3cret", "name": "Authorization"}
    assert "s3cret" not in preview({"h": headers}, limit=100_000)[0]


# --- Block ids from outside text (point 4a) -------------------------------------------------


def test_queue_names_cannot_collide_in_block_ids():
    names = ["x", "end-x", "q" * 300 + "a", "q" * 300 + "b"]
    view = tab([make({"n": n}, queue=name, n=n) for n, name in enumerate(names)])
    check_view(view, "home")  # Slack's rules: unique block ids of at most 255 characters
    ids = [b["block_id"] for b in view["blocks"]]
    assert len(set(ids)) == len(ids) and all(len(i) <= 255 for i in ids)
    assert not any("end-x" in i or "qqq" in i for i in ids)


def test_queues_whose_names_collided_still_publish_the_home_tab(start_service, slack, rotor):
    start_service(make_policy(queues=OPS))
    first, second = rotor.enqueue("x", {"n": 1}), rotor.enqueue("end-x", {"n": 2})
    posted(slack, first["id"]), posted(slack, second["id"])
    slack.open_home(CAROL)
    assert listed(home(slack, CAROL, "2 approvals wait")) == [first["id"], second["id"]]


# --- Sizes as sent (point 4b, c) ------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        {"type": "section", "text": {"type": "mrkdwn", "text": "😀" * 1501}},  # 3002 units
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "&amp;" * 401}]},
        {"type": "header", "text": {"type": "plain_text", "text": "😀" * 76}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "x" * 3001}]},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "😀" * 38}, "value": "1"}
            ],
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "ok"},
                    "confirm": {
                        "title": {"type": "plain_text", "text": "t"},
                        "text": {"type": "plain_text", "text": "x" * 301},
                        "confirm": {"type": "plain_text", "text": "y"},
                        "deny": {"type": "plain_text", "text": "n"},
                    },
                }
            ],
        },
        {"type": "divider", "block_id": "😀" * 128},
    ],
)
def test_the_slack_stand_in_refuses_text_past_slacks_limits(block):
    with pytest.raises(SlackError, match="invalid_blocks"):
        validate_blocks([block])


def test_the_slack_stand_in_counts_a_message_as_sent():
    # 8,400 code points, 16,800 UTF-16 units: past the ~13,000 Slack takes.
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "😀" * 1400}}] * 6
    with pytest.raises(SlackError, match="msg_blocks_too_long"):
        validate_blocks(blocks)
    with pytest.raises(SlackError, match="view_too_large"):  # JSON escapes: 12 bytes an emoji
        check_view({"type": "home", "blocks": blocks * 4}, "home")


def test_clipping_happens_after_escaping_and_never_splits_an_entity_or_a_mention():
    assert escaped("<" * 2000, 3000) == "&lt;" * 749 + "…"
    assert clip_mrkdwn("ab &amp; <@U0CAROL> &lt;", 12) == "ab &amp; …"
    assert slack_len(escaped(EMOJI * 500, 1000)) <= 1000


WORST = "&<" * 300 + EMOJI * 100


def test_escape_and_emoji_heavy_text_everywhere_keeps_every_surface_within_limits():
    paths = [f"f{n}" for n in range(10)]
    rules = QueueRules(
        queue=WORST, title="{f0} {f1}", fields=paths, rule=WORST, approvers=(CAROL,), confirm="f2"
    )
    payload = {p: WORST for p in paths} | {"rest": [WORST] * 50}
    approval = make(payload, queue=WORST[:500], job=WORST[:500])
    validate_blocks(approval_message(approval, rules, meant_for="C0X").blocks_json())
    approval.status, approval.decided_by, approval.decided_at = Status.REJECTED, CAROL, NOW
    approval.reason = WORST * 5
    message = approval_message(approval, rules, quorum=Quorum(3, [CAROL] * 2))
    validate_blocks(message.blocks_json())
    assert slack_len(requester_text(approval, [CAROL], "https://x/y")) <= 4000
    # Forty of them on a Home tab, fifteen on an /approvals page.
    many = [make(payload, queue=WORST[:500] + str(n), job=WORST, n=n) for n in range(45)]
    check_view(tab(many, rules, notice_text="&" * 3000), "home")
    items = [
        ListItem(a.id, a.queue_name, a.job_id, "pending", a.payload, NOW, CAROL, None, (), rules)
        for a in many[:15]
    ]
    validate_blocks([b.to_dict() for b in approvals_list(items, ListQuery(), "next", NOW, 0)])
    decided_items = [
        ListItem(a.id, a.queue_name, a.job_id, "rejected", a.payload, NOW, CAROL, WORST, (), rules)
        for a in many[:15]
    ]
    page = approvals_list(decided_items, ListQuery(Status.REJECTED), "next", NOW, 0)
    validate_blocks([b.to_dict() for b in page])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(HOSTILE, min_size=10, max_size=10), reason=HOSTILE)
def test_any_hostile_fields_and_reason_keep_a_message_within_limits(values, reason):
    paths = [f"f{n}" for n in range(10)]
    rules = QueueRules(queue="payments", title="{f0}", fields=paths)
    payload = {p: v * 50 for p, v in zip(paths, values, strict=True)}
    approval = make(payload, queue=values[0] or "q", job=values[1] or "j")
    validate_blocks(approval_message(approval, rules).blocks_json())
    approval.status, approval.decided_by, approval.decided_at = Status.REJECTED, CAROL, NOW
    approval.reason = reason * 20 or "no"
    validate_blocks(approval_message(approval, rules).blocks_json())


def test_a_reason_of_two_thousand_angle_brackets_updates_the_message(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 1})
    slack.click(CAROL, posted(slack, approval["id"]), "reject")
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the modal")
    fake = ":white_check_mark: *Approved* by <@U0DAVE> (CFO)"
    reason = f"fine\n{fake}\r\n" + "<" * 2000
    slack.submit_view(CAROL, view_id, {"reason": {"reason_input": reason}})
    message = decided(slack, approval["id"])
    assert "approve" not in buttons(message) and "reject" not in buttons(message)
    text = outcome(message)
    lines = text.split("\n")
    assert lines[0].startswith(f":x: *Rejected* by <@{CAROL}>") and lines[1] == "*Reason:*"
    assert lines[2:4] == ["> fine", "> :white_check_mark: *Approved* by &lt;@U0DAVE&gt; (CFO)"]
    assert lines[4].startswith("> &lt;&lt;") and lines[4].endswith("&lt;…")
    assert len(lines) == 5 and slack_len(text) <= 3000


# --- Reasons quoted on lines of their own (point 4d) -----------------------------------------


FAKE_LINES = (
    "ok\n:white_check_mark: *Approved* by <@U0DAVE> (CFO)\r✅ Approved by Dave (CFO)"
    "\u2028✅ again\x85✅ and\n\n>>> all quoted?"
)


def test_a_reason_cannot_pass_for_an_outcome_line_anywhere_it_is_shown():
    approval = rejected(FAKE_LINES)
    item = ListItem(approval.id, "q", "j", "rejected", {}, NOW, CAROL, FAKE_LINES)
    for text, ours in [
        (outcome_line(approval), 2),
        (requester_text(approval, [], "https://x/y"), 3),
        (notice(errors.AlreadyDecided(approval)), 2),
        (decided_line(item), 1),
    ]:
        lines = text.splitlines()  # every line break Slack might honour
        assert all(line.startswith(">") for line in lines[ours:]), text
        assert len(lines) - ours == 7  # each line of the reason on one of its own
        assert "&gt;&gt;&gt; all quoted?" in lines[-1]


@settings(max_examples=100, deadline=None)
@given(reason=st.text(min_size=1))
def test_any_reason_is_quoted_line_by_line_and_clipped_after_escaping(reason):
    text = outcome_line(rejected(reason))
    lines = text.splitlines()
    assert lines[1] == "*Reason:*" and all(line.startswith(">") for line in lines[2:])
    assert slack_len(quoted(reason, 300)) <= 300
