"""Rendering: any payload gives Block Kit the strict stand-in accepts, with nothing live."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import errors
from app.config import QueueRules
from app.db.models import Approval, Status
from app.interactions.commands import (
    HELP,
    ListQuery,
    looks_like_status,
    parse_list_command,
    unknown_word,
)
from app.interactions.notices import notice
from app.sandbox.slack_objects import MODAL_BLOCKS_MAX, validate_blocks
from app.slack.blocks import templates
from app.slack.blocks.approval import (
    Message,
    Quorum,
    approval_message,
    escalation_text,
    reminder_text,
    requester_text,
)
from app.slack.blocks.listing import LIST_PAGE_SIZE, ListItem, approvals_list
from app.slack.blocks.modals import payload_modal
from app.slack.blocks.text import (
    MASK,
    PREVIEW_CHARS,
    age,
    ago,
    escape,
    mask_secrets,
    mask_text,
    pretty_payload,
    preview,
)
from tests.conftest import LIVE, mrkdwn_texts

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PLAIN = QueueRules(queue="payments")  # a queue the policy file says nothing about


def rules(*approvers: str) -> QueueRules:
    return QueueRules(queue="payments", approvers=approvers)


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
    assert_safe(approval_message(approval, PLAIN))
    approval.status, approval.decided_by, approval.decided_at = Status.REJECTED, "U0CAROL", NOW
    approval.reason = job
    assert_safe(approval_message(approval, PLAIN), ours="<@U0CAROL>")
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
    message = approval_message(make({"blob": "x" * 10_000}), PLAIN)
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
    rendered = approval_message(make({"a": 1}), PLAIN).blocks_json()
    ids = [
        e["action_id"].split(":")[0]
        for b in rendered
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert ids == ["approve", "reject"]


def test_decided_message_keeps_the_preview_block_and_drops_the_buttons():
    approval = make({"a": 1}, status=Status.APPROVED, decided_by=None, decided_at=NOW)
    rendered = approval_message(approval, PLAIN).blocks_json()
    assert [b["block_id"] for b in rendered] == ["title", "facts", "preview", "outcome"]
    assert "Approved* outside Slack" in rendered[-1]["text"]["text"]


def test_huge_payload_modal_stays_within_limits():
    approval = make({"rows": ["y" * 1000] * 1000})
    view = payload_modal(approval).to_dict()
    assert len(view["blocks"]) <= MODAL_BLOCKS_MAX
    assert len(json.dumps(view)) < 250_000
    assert "rest of the payload is not shown" in json.dumps(view["blocks"][-1])


@pytest.mark.parametrize(
    ("text", "status", "queue", "mine"),
    [
        ("", "pending", None, False),
        ("approved", "approved", None, False),
        ("REJECTED payments", "rejected", "payments", False),
        ("payments pending", "pending", "payments", False),
        ("ops", "pending", "ops", False),
        ("mine", "pending", None, True),
        ("payments MINE", "pending", "payments", True),
    ],
)
def test_list_command_parsing(text, status, queue, mine):
    assert parse_list_command(text) == ListQuery(status, queue, mine)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("help", ""),
        ("a b", "Name one queue at most: `a b` is more than one word."),
        ("pending foo bar", "Name one queue at most: `foo bar` is more than one word."),
        ("mine approved", "`mine` lists what waits on you, so only pending ones: no `approved`."),
        ("mine a b", "Name one queue at most: `a b` is more than one word."),
    ],
)
def test_list_command_says_what_was_wrong_then_helps(text, said):
    answer = parse_list_command(text)
    assert isinstance(answer, str) and answer.endswith(HELP)
    assert answer.removesuffix(HELP).strip() == said


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


def test_ago_never_says_just_now_ago():
    assert ago(NOW - timedelta(seconds=5), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert ago(None, NOW) == "age unknown"


def test_reminder_mentions_users_and_groups():
    text = reminder_text(make({}), rules("U0CAROL", "S0FINANCE"), NOW)
    assert text.startswith("<@U0CAROL> <!subteam^S0FINANCE>: ")
    assert "2 h" in text


def test_reminder_on_a_queue_without_approvers_says_anyone_can_decide():
    text = reminder_text(make({}), PLAIN, NOW)
    assert "Anyone in this channel can decide" in text and "Approvers" not in text


def test_quorum_reminders_and_escalations_name_who_may_still_vote_and_the_progress():
    quorum = Quorum(2, ["U0CAROL"])
    text = reminder_text(make({}), rules("U0CAROL", "U0DAVE", "S0FINANCE"), NOW, quorum)
    assert text.startswith("<@U0DAVE> <!subteam^S0FINANCE>: ")  # not Carol, who approved
    assert "1 of 2 approvals so far. Please decide." in text and "U0CAROL" not in text
    anyone = reminder_text(make({}), PLAIN, NOW, quorum)
    assert "1 of 2 approvals so far. Anyone in this channel who has not approved it" in anyone
    escalation = escalation_text(
        make({}, reminders_sent=3), rules("U0CAROL", "U0DAVE"), None, NOW, quorum
    )
    assert "Nobody has decided" not in escalation
    assert "still needs 1 more approval after 3 reminders" in escalation
    assert "1 of 2 approvals so far." in escalation
    assert escalation.endswith("Who can decide: <@U0DAVE>")
    assert "U0CAROL" not in escalation
    nobody = escalation_text(make({}, reminders_sent=3), rules("U0DAVE"), None, NOW, Quorum(2))
    assert "Nobody has decided" in nobody and nobody.endswith("Who can decide: <@U0DAVE>")


# --- Per-queue templates (title, fields, link, mask) -------------------------------------------

PAY = QueueRules(
    queue="payments",
    title="Pay {amount} {currency} to {beneficiary.name}",
    fields=["amount", "beneficiary.name", "reference"],
    link="https://rotor.example.com/jobs/{job_id}?q={queue}",
    mask=["beneficiary.iban"],
)
PAYMENT = {
    "amount": 120.5,
    "currency": "EUR",
    "beneficiary": {"name": "Ann <@U1> *Lee*", "iban": "DE89370400440532013000"},
}


def block(message: Message, block_id: str) -> dict:
    return next(b for b in message.blocks_json() if b.get("block_id") == block_id)


def test_title_fields_link_and_mask_render():
    message = approval_message(make(PAYMENT, job="j/1?x#y"), PAY)
    assert block(message, "title")["text"]["text"] == "Pay 120.5 EUR to Ann <@U1> *Lee*"
    summary = [f["text"] for f in block(message, "summary")["fields"]]
    assert summary == [
        "*Amount*\n120.5",
        "*Beneficiary name*\nAnn &lt;@U1&gt; *Lee*",
        "*Reference*\n?",  # a path the payload lacks
    ]
    button = block(message, "actions")["elements"][2]
    assert button["text"]["text"] == "Open in Rotor"
    # The job id cannot add a path, a query or a fragment of its own.
    assert button["url"] == "https://rotor.example.com/jobs/j%2F1%3Fx%23y?q=payments"
    assert "DE89370400440532013000" not in json.dumps(message.blocks_json())
    assert message.text == "Pay 120.5 EUR to Ann &lt;@U1&gt; *Lee* (job j/1?x#y)"
    assert_safe(message)
    # Without a title: the header stays as it was.
    plain = approval_message(make(PAYMENT), PLAIN)
    assert block(plain, "title")["text"]["text"] == "Approval needed: payments"


def test_header_is_clipped_to_150_and_fields_to_ten():
    queue = QueueRules(queue="q", title="{a}{a}", fields=[f"f{i}" for i in range(10)])
    message = approval_message(make({"a": "x" * 500}), queue)
    assert len(block(message, "title")["text"]["text"]) == 150
    assert len(block(message, "summary")["fields"]) == 10
    assert templates.label("beneficiary.account_holder") == "Beneficiary account holder"
    assert templates.label("accessKey") == "Access key"


@pytest.mark.parametrize(
    ("link", "payload"),
    [
        ("https://rotor.example.com/{u}", {"u": "@evil.example/x"}),
        ("https://rotor.example.com{u}", {"u": ".evil.example"}),
        ("https://rotor.example.com{u}", {"u": ":1@evil.example"}),
    ],
)
def test_a_payload_cannot_move_the_link_to_another_host(link, payload):
    facts = templates.Facts.of(payload, "j", "a", "q")
    url = templates.link(link, facts)
    assert url is None or urlsplit(url).netloc == "rotor.example.com", url


template_parts = st.lists(
    st.text(max_size=30).map(lambda t: t.replace("{", "{{").replace("}", "}}"))
    | st.sampled_from(["{amount}", "{beneficiary.name}", "{job_id}", "{queue}", "{x.0}", "{b}"]),
    max_size=6,
).map("".join)
paths = st.from_regex(r"\A[a-z_]{1,8}(\.[a-z0-9]{1,5}){0,2}\Z")
keyed_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["amount", "beneficiary", "name", "b", "x", "0"]) | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=keyed_values,
    title=template_parts,
    fields=st.lists(paths, max_size=10),
    queue=st.text(min_size=1, max_size=300),
    job=st.text(min_size=1, max_size=300),
)
def test_any_payload_and_template_render_valid_block_kit_with_nothing_live(
    payload, title, fields, queue, job
):
    policy = QueueRules(
        queue="q", title=title, fields=fields, link="https://r.example/{job_id}/{b}"
    )
    approval = make(payload, queue, job)
    message = approval_message(approval, policy)
    assert_safe(message)
    # The fallback carries no link (a job id of "://" is only text, escaped like the rest).
    assert "https://r.example" not in message.text
    for status in (Status.APPROVED, Status.REJECTED):
        approval.status, approval.decided_by, approval.decided_at = status, None, NOW
        assert_safe(approval_message(approval, policy))
    for b in message.blocks_json():
        if b["type"] == "actions":
            for e in b["elements"]:
                assert "url" not in e or e["url"].startswith("https://r.example/")
    item = ListItem(approval.id, queue, job, "rejected", payload, NOW, job, job)
    listed = [b.to_dict() for b in approvals_list([item], ListQuery(), None, NOW, 0)]
    validate_blocks(listed)
    for text in mrkdwn_texts(listed):
        assert not LIVE.search(text)
    for text in (reminder_text(approval, policy, NOW), escalation_text(approval, PLAIN, None, NOW)):
        assert not LIVE.search(text)


# --- Formatting that cannot be bent --------------------------------------------------------------

NASTY = "a`b *c* _d_ ~e~\nfake line\u202eevil\u200bx\u2028y"


def test_job_ids_and_queue_names_stay_in_their_code_spans():
    message = approval_message(make({}, queue=NASTY, job=NASTY), PLAIN)
    facts = [f["text"] for f in block(message, "facts")["fields"]]
    for field in facts[:2]:
        label, value = field.split("\n")  # no faked line
        assert value.startswith("`") and value.endswith("`") and value.count("`") == 2
        assert not any(c in value for c in "\u202e\u200b\u2028")
    assert "\n" not in block(message, "title")["text"]["text"]
    assert "\u202e" not in message.text


def test_fallback_text_carries_no_payload_url():
    queue = QueueRules(queue="q", title="See {u} now")
    message = approval_message(make({"u": "https://evil.example/x www.evil.example"}), queue)
    assert "evil" not in message.text and "://" not in message.text


# --- Masking -------------------------------------------------------------------------------------


def test_masking_catches_what_the_issue_lists_and_keeps_what_approvers_need():
    payload = {
        "card_number": "4111",
        "cvv": "123",
        "ssn": "1",
        "pin": "1",
        "pwd": "x",
        "auth": "x",
        "accessKey": "x",
        "Card-Number": "x",
        "headers": [{"name": "Authorization", "value": "Bearer z"}],
        "pairs": [["X-Api-Key", "k"], ["Accept", "json"]],
        "url": "https://user:pass@host.example/x?token=abc&page=2",
        "note": "card 4111 1111 1111 1111 please",
        "raw": 4111111111111111,
        "amount": 4111111111111112,
        "author": "Ann",
        "shipping": "fast",
        "iban": "DE89 3704 0044 0532 0130 00",
        "beneficiary": {"name": "Ann", "iban": "DE89370400440532013000"},
    }
    shown = mask_secrets(payload)
    for key in ("card_number", "cvv", "ssn", "pin", "pwd", "auth", "accessKey", "Card-Number"):
        assert shown[key] == MASK, key
    assert shown["headers"] == [{"name": "Authorization", "value": MASK}]
    assert shown["pairs"] == [["X-Api-Key", MASK], ["Accept", "json"]]
    assert shown["url"] == f"https://{MASK}@host.example/x?token={MASK}&page=2"
    assert shown["note"] == f"card {MASK} please"
    assert shown["raw"] == MASK
    for key in ("amount", "author", "shipping", "iban", "beneficiary"):
        assert shown[key] == payload[key], key
    assert mask_secrets(payload, paths=["beneficiary.iban"])["beneficiary"]["iban"] == MASK


SECRET = "hunter2-s3cr3t-zz"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJVMSJ9.c2lnbmF0dXJlLXotejk"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + SECRET + "\n-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        ({"socialSecurityNumber": SECRET}, {"socialSecurityNumber": MASK}),
        ({"jwt": SECRET, "idJwt": SECRET}, {"jwt": MASK, "idJwt": MASK}),
        (
            {"Headers": [{"Name": "Authorization", "Value": SECRET}, {"Name": "A", "Value": "b"}]},
            {"Headers": [{"Name": "Authorization", "Value": MASK}, {"Name": "A", "Value": "b"}]},
        ),
        (
            {"tags": [{"Key": "db_password", "Value": SECRET}]},
            {"tags": [{"Key": "db_password", "Value": MASK}]},
        ),
        (
            {"log": f"GET /x Authorization: Bearer {SECRET} 200"},
            {"log": f"GET /x Authorization: Bearer {MASK} 200"},
        ),
        ({"log": f"sent bearer {SECRET}"}, {"log": f"sent bearer {MASK}"}),
        (
            {"url": f"https://a.example/b?sig={SECRET}&key={SECRET}&page=2"},
            {"url": f"https://a.example/b?sig={MASK}&key={MASK}&page=2"},
        ),
        ({"login": f"Password={SECRET}; user=ann"}, {"login": f"Password={MASK}; user=ann"}),
        (
            {"body": json.dumps({"user": "ann", "password": SECRET})},
            {"body": json.dumps({"user": "ann", "password": MASK}, ensure_ascii=False)},
        ),
        (
            {"body": json.dumps([{"headers": {"Authorization": SECRET}}])},
            {"body": json.dumps([{"headers": {"Authorization": MASK}}], ensure_ascii=False)},
        ),
        ({"note": f"token {JWT} end"}, {"note": f"token {MASK} end"}),
        ({"note": f"key:\n{PEM}\nthanks"}, {"note": f"key:\n{MASK}\nthanks"}),
        ({"note": PEM[:40]}, {"note": MASK}),  # cut before its END line
        ({"ref": "card_4111111111111111"}, {"ref": f"card_{MASK}"}),
        ({"ref": "4111.1111.1111.1111."}, {"ref": f"{MASK}."}),
    ],
)
def test_masking_catches_the_variants_that_leaked(payload, shown):
    assert mask_secrets(payload) == shown
    assert SECRET not in preview(payload)[0]


@pytest.mark.parametrize(
    "text",
    [
        "1234567890123.45",  # an amount, not a card
        "the bearer of bad news",
        "v2024.1105.1234",
        '{"n": 1, "note": "json kept as written"}',
        "primary key=5 and sig=3",  # `key`/`sig` only count in a URL's query
        "DE89 3704 0044 0532 0130 00",
    ],
)
def test_masking_leaves_what_only_looks_like_a_secret(text):
    assert mask_secrets({"note": text}) == {"note": text}


def luhn_completed(digits: str) -> str:
    for last in "0123456789":
        number = digits + last
        total = sum(
            (n * 2 - 9 if n * 2 > 9 else n * 2) if i % 2 else n
            for i, n in enumerate(int(d) for d in reversed(number))
        )
        if total % 10 == 0:
            return number
    raise AssertionError("unreachable")


@given(
    digits=st.text("0123456789", min_size=15, max_size=15),
    separator=st.sampled_from(["", " ", "-", "."]),
    before=st.sampled_from(["", "card ", "card_", "card:", "(", '"']),
    after=st.sampled_from(["", " please", ".", "_x", ")"]),
)
def test_any_card_number_is_masked_however_written(digits, separator, before, after):
    number = luhn_completed(digits)
    written = separator.join(number[i : i + 4] for i in range(0, 16, 4))
    assert mask_text(before + written + after) == before + MASK + after


@given(
    payload=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    key=st.sampled_from(["password", "Authorization", "jwt", "client_secret"]),
)
def test_json_written_inside_a_string_is_masked_within(payload, key):
    inner = json.dumps(payload | {key: SECRET})
    assert SECRET not in json.dumps(mask_secrets({"body": inner, "twice": json.dumps([inner])}))


HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u2060\ufeff"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.recursive(
        st.text(alphabet=st.sampled_from(["a", " ", "{", "=", *HIDDEN])),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.text(alphabet=st.sampled_from(["k", *HIDDEN])), children, max_size=3
            )
        ),
        max_leaves=10,
    )
)
def test_reordering_and_invisible_characters_are_shown_escaped_in_any_preview(payload):
    text, cut = preview(payload)
    assert not any(c in text for c in HIDDEN)
    if not cut:  # the escapes are JSON's own: the preview still reads as the masked payload
        assert json.loads(text) == mask_secrets(payload)


def test_nothing_rendered_from_a_payload_carries_reordering_or_invisible_characters():
    sneaky = "Ann\u202egnp.exe\u200b\u2066x\u2069\ufeff"
    queue = QueueRules(queue="q", title="Pay {who}", fields=["who", "n"])
    approval = make({"who": sneaky, "n": {sneaky: sneaky}, "long": "x" * 3000})
    message = approval_message(approval, queue)
    listed = approvals_list(
        [ListItem(approval.id, "q", "j", "pending", approval.payload, NOW, rules=queue)],
        ListQuery(),
        None,
        NOW,
        0,
    )
    rendered = json.dumps(
        [message.blocks_json(), message.text, payload_modal(approval).to_dict()]
        + [b.to_dict() for b in listed],
        ensure_ascii=False,
    )
    assert not any(c in rendered for c in HIDDEN)
    assert "Pay Ann\\u202egnp.exe\\u200b" in block(message, "title")["text"]["text"]


# --- Words -------------------------------------------------------------------------------------


def test_typos_of_statuses_and_long_arguments():
    assert looks_like_status("rejcted") and looks_like_status("aproved")
    assert not looks_like_status("payments") and not looks_like_status("ops")
    assert parse_list_command("x" * 5000).startswith("That is longer than any status")


def test_decided_list_items_say_who_and_why():
    items = [
        ListItem("apv_" + "1" * 32, "ops", "j1", "rejected", {}, NOW, "U0CAROL", "too <!here>"),
        ListItem("apv_" + "2" * 32, "ops", "j2", "approved", {}, NOW, "cli@ops", None),
    ]
    rendered = [b.to_dict() for b in approvals_list(items, ListQuery("rejected"), None, NOW, 0)]
    texts = list(mrkdwn_texts(rendered))
    assert "Rejected by <@U0CAROL>\n> too &lt;!here&gt;" in texts[1]  # the reason quoted
    assert "Approved by `cli@ops`" in texts[2]
    assert "just now" in texts[1] and "ago" not in texts[1]


def test_a_non_approver_is_told_who_can_decide():
    text = notice(errors.NotAnApprover("pay`ments", "approve", ["U0CAROL", "S0FINANCE"]))
    assert "<@U0CAROL> <!subteam^S0FINANCE>" in text and "`payˋments`" in text


def test_a_title_none_of_whose_paths_resolve_falls_back_to_the_default():
    queue = QueueRules(queue="payments", title="Pay {amount} {currency} to {beneficiary.name}")

    def header(approval, queue) -> str:
        return approval_message(approval, queue).blocks_json()[0]["text"]["text"]

    assert header(make({"note": "x"}), queue) == "Approval needed: payments"  # not "Pay ? ? to ?"
    assert header(make({"amount": 5}), queue) == "Pay 5 ? to ?"  # one found: the template holds
    reserved = QueueRules(queue="payments", title="Job {job_id}")
    assert header(make({}), reserved) == "Job job_1"


def test_an_expired_approval_says_why_once():
    approval = make(
        {},
        status=Status.REJECTED,
        expired=True,
        decided_at=NOW,
        reason="Expired: no decision within 6h",
    )
    blocks = approval_message(approval, PLAIN).blocks_json()
    block = next(b for b in blocks if b.get("block_id") == "outcome")
    text = block["text"]["text"]
    assert text.startswith(":hourglass: *Expired* (no decision within 6h) on <!date^")
    assert text.count("no decision") == 1 and "Reason" not in text


def test_the_sandbox_page_draws_every_emoji_the_bot_sends():
    import re
    from importlib.resources import files
    from pathlib import Path

    import app.slack

    source = "".join(p.read_text() for p in Path(app.slack.__file__).parent.rglob("*.py"))
    sent = set(re.findall(r":([a-z_]+):", source))
    page = files("app.sandbox").joinpath("workspace.html").read_text()
    drawn = set(re.findall(r"(\w+):", re.search(r"const EMOJI = \{(.*?)\};", page)[1]))
    assert sent and sent <= drawn, sent - drawn


def test_an_unknown_queue_gets_the_closest_configured_name():
    assert "Did you mean `payments`?" in unknown_word("paymnts", ["payments", "ops"])
    assert "Did you mean" not in unknown_word("zzz", ["payments", "ops"])


def test_pending_list_items_show_the_quorum_s_progress():
    from app.config import parse_policy

    policy = parse_policy("[[queues]]\nname = 'payments'\nrequired_approvals = 2")
    rules = policy.rules_for("payments")
    item = ListItem(
        "apv_" + "a" * 32, "payments", "job_1", "pending", {}, NOW, voters=("U0CAROL",), rules=rules
    )
    (section, _) = approvals_list([item], ListQuery(), None, NOW, 0)[1:3]
    assert "*1 of 2 approvals:* <@U0CAROL>" in section.to_dict()["text"]["text"]


def test_the_requester_s_dm_carries_no_payload_text():
    approval = make(
        {"amount": "<!channel> click https://evil.example", "requestedBy": "U0X"},
        status=Status.REJECTED,
        decided_by="U0CAROL",
        decided_at=NOW,
        reason="no",
    )
    text = requester_text(approval, [], "https://slack.example/archives/C1/p1")
    assert "evil" not in text and "channel" not in text
    assert text.startswith("Your request, job `job_1` on `payments` (<https://slack.example/")


def test_a_list_page_carried_on_an_item_s_buttons_round_trips_and_refuses_odd_values():
    from app.slack.ids import ListPage

    page = ListPage(status="approved", queue="payments", cursor="apv_x", page=2)
    block_id = page.on_item("apv_" + "a" * 32)
    assert block_id.startswith("decide-apv_") and ListPage.of_item(block_id) == page
    assert ListPage.of_item("decide-apv_x") is None  # nothing carried
    assert ListPage.of_item('decide-apv_x {"s": "../v1/queues"}') is None  # not a status
    assert ListPage.of_item('decide-apv_x {"s": "pending", "z": 1}') is None
    long = ListPage(status="pending", queue="q" * 300)
    assert long.on_item("apv_" + "a" * 32) == "decide-apv_" + "a" * 32  # over 255: not carried
