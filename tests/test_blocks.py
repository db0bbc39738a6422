"""Rendering: any payload gives Block Kit the strict stand-in accepts, with nothing live."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.db.models import Approval, Status
from app.sandbox.slack import MODAL_BLOCKS_MAX, validate_blocks
from app.slack.blocks.approval import Message, approval_message, reminder_text
from app.slack.blocks.listing import LIST_PAGE_SIZE, ListItem, approvals_list
from app.slack.blocks.modals import payload_modal
from app.slack.blocks.text import MASK, PREVIEW_CHARS, age, escape, pretty_payload, preview
from app.slack.commands import ListQuery, parse_list_command
from tests.conftest import LIVE, mrkdwn_texts

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=20), children, max_size=8)
    ),
    max_leaves=60,
)


def make(payload, queue="payments", job="job_1", **fields) -> Approval:
    return Approval(
        id="apv_" + "a" * 32,
        job_id=job,
        queue_name=queue,
        payload=payload,
        created_at=NOW - timedelta(hours=2),
        **fields,
    )


def assert_safe(message: Message, ours: str = "") -> None:
    """Valid Block Kit, and no live sequence but dates and the mention we put in (`ours`)."""
    rendered = message.blocks_json()
    validate_blocks(rendered)
    for text in [message.text, *mrkdwn_texts(rendered)]:
        assert not LIVE.search(text.replace(ours, "") if ours else text), text
    for m in mrkdwn_texts(rendered):
        assert m  # no empty mrkdwn


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_values, queue=st.text(min_size=1, max_size=600), job=st.text(min_size=1))
def test_any_payload_renders_valid_block_kit_with_nothing_live(payload, queue, job):
    approval = make(payload, queue, job)
    assert_safe(approval_message(approval))
    approval.status, approval.decided_by, approval.decided_at = Status.REJECTED, "U0CAROL", NOW
    approval.reason = job
    assert_safe(approval_message(approval), ours="<@U0CAROL>")
    modal = payload_modal(approval).to_dict()
    validate_blocks(modal["blocks"], modal=True)


@settings(max_examples=50, deadline=None)
@given(text=st.text())
def test_escape_leaves_no_control_characters(text):
    escaped = escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a & b", "a &amp; b"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("x > y", "x &gt; y"),
        ("&lt;", "&amp;lt;"),  # an entity in the input is shown as typed, not decoded
        ("&amp;lt;", "&amp;amp;lt;"),
        ("<@U0CAROL|&>", "&lt;@U0CAROL|&amp;&gt;"),
        ("plain text", "plain text"),
    ],
)
def test_escape_examples(text, escaped):
    assert escape(text) == escaped


def test_secret_looking_keys_are_masked_anywhere():
    payload = {
        "user": {"Password": "p", "api_key": "k", "x-api-key": "k2", "name": "ann"},
        "items": [{"access_token": "t"}, {"authorization": "Bearer z"}],
        "client_secret": {"nested": "s"},
    }
    text, cut = preview(payload)
    assert not cut
    shown = json.loads(text)
    assert shown["user"] == {
        "Password": MASK,
        "api_key": MASK,
        "x-api-key": MASK,
        "name": "ann",
    }
    assert shown["items"] == [{"access_token": MASK}, {"authorization": MASK}]
    assert shown["client_secret"] == MASK


@pytest.mark.parametrize(
    "key",
    [
        "pass",
        "passwd",
        "PASSWORD",
        "client_secret",
        "refresh_token",
        "Authorisation",
        "apikey",
        "private-key",
        "credentials",
        "Cookie",
        "session_id",
        "signature",
        "bearer",
    ],
)
def test_each_kind_of_secret_key_is_masked(key):
    assert json.loads(preview({key: "s3cr3t", "amount": 5})[0]) == {
        key: MASK,
        "amount": 5,
    }


def test_preview_keeps_non_ascii_and_cuts_only_beyond_the_limit():
    text, cut = preview({"name": "Zoë 東京"})
    assert "Zoë 東京" in text and not cut
    exact = pretty_payload({"k": "x" * 100})
    assert preview({"k": "x" * 100}, limit=len(exact)) == (exact, False)
    assert preview({"k": "x" * 100}, limit=len(exact) - 1) == (
        exact[: len(exact) - 2] + "…",
        True,
    )


def test_long_payload_is_cut_with_a_view_button():
    message = approval_message(make({"blob": "x" * 10_000}))
    text, cut = preview({"blob": "x" * 10_000})
    assert cut and len(text) == PREVIEW_CHARS
    actions = [
        e["action_id"]
        for b in message.blocks_json()
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert actions == [
        "approve:" + "apv_" + "a" * 32,
        "reject:apv_" + "a" * 32,
        "view_payload:apv_" + "a" * 32,
    ]


def test_short_payload_has_no_view_button():
    rendered = approval_message(make({"a": 1})).blocks_json()
    ids = [
        e["action_id"].split(":")[0]
        for b in rendered
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert ids == ["approve", "reject"]


def test_decided_message_keeps_the_preview_block_and_drops_the_buttons():
    approval = make({"a": 1}, status=Status.APPROVED, decided_by=None, decided_at=NOW)
    rendered = approval_message(approval).blocks_json()
    assert [b["block_id"] for b in rendered] == ["title", "facts", "preview", "outcome"]
    assert "Approved* outside Slack" in rendered[-1]["text"]["text"]


def test_huge_payload_modal_stays_within_limits():
    approval = make({"rows": ["y" * 1000] * 1000})
    view = payload_modal(approval).to_dict()
    assert len(view["blocks"]) <= MODAL_BLOCKS_MAX
    assert len(json.dumps(view)) < 250_000
    assert "more characters are not shown" in json.dumps(view["blocks"][-1])


@pytest.mark.parametrize(
    ("text", "status", "queue"),
    [
        ("", "pending", None),
        ("approved", "approved", None),
        ("REJECTED payments", "rejected", "payments"),
        ("payments pending", "pending", "payments"),
        ("ops", "pending", "ops"),
    ],
)
def test_list_command_parsing(text, status, queue):
    assert parse_list_command(text) == ListQuery(status, queue)


@pytest.mark.parametrize("text", ["help", "a b", "pending a b"])
def test_list_command_help(text):
    assert parse_list_command(text) is None


def test_list_page_fits_a_message():
    items = [
        ListItem(f"apv_{i:032x}", "<!here>", "j", "pending", {"t": "<@U1>"}, NOW)
        for i in range(LIST_PAGE_SIZE)
    ]
    rendered = approvals_list(items, ListQuery(), "cursor", NOW, 3)
    as_json = [b.to_dict() for b in rendered]
    validate_blocks(as_json)
    for text in mrkdwn_texts(as_json):
        assert not LIVE.search(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "just now"), (300, "5 min"), (3600, "1 h"), (3720, "1 h 2 min"), (3 * 86400, "3 d")],
)
def test_age(seconds, text):
    assert age(NOW - timedelta(seconds=seconds), NOW) == text


def test_reminder_mentions_users_and_groups():
    text = reminder_text(make({}), ["U0CAROL", "S0FINANCE"], NOW)
    assert text.startswith("<@U0CAROL> <!subteam^S0FINANCE>: ")
    assert "2 h" in text
