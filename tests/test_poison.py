"""Poison from outside (issue 25): one approval that Python's json or the database cannot hold
(nested 1,000 levels deep, a 5,000-digit integer, `1e400`, a NUL) stops nothing else, is
refused (webhook: 4xx, never a 500 loop) or reported once as unreadable (poll, sync), and no log
line ever carries a payload value: every hostile payload here carries canary secrets, and the
service's whole log is scanned for them."""

from __future__ import annotations

import asyncio
import json
import re
import time
import traceback

import pytest
from sqlalchemy import insert

from app import schema, storable
from app.db import Store
from app.db.models import Approval, utcnow
from app.errors import DatabaseRefused
from app.rotor import ApprovalPage
from app.sandbox.rotor import RawJSON, new_approval_id
from tests.conftest import CAROL, make_policy, metric, posted, stored, wait_until
from tests.test_webhooks import send

API_KEY = "sk_live_CANARY7f3a9e1d"  # recognisable: found in a log line, it is a leak
CARD = "4111111111111111"
CANARIES = (API_KEY, CARD)
SECRETS = f'"apiKey": "{API_KEY}", "card": "{CARD}"'
DEEP = "[" * 1000 + "]" * 1000
HUGE = "9" * 5000  # past Python's 4,300-digit int-str conversion limit


def poison() -> dict[str, RawJSON]:
    """Payloads as raw JSON text, each with the canaries beside the poison."""
    return {
        "deep": RawJSON(f'{{{SECRETS}, "rows": {DEEP}}}'),
        "huge": RawJSON(f'{{{SECRETS}, "amount": {HUGE}}}'),
        "inf": RawJSON(f'{{{SECRETS}, "amount": 1e400}}'),
    }


def plain_payload(n: int) -> dict:
    return {"apiKey": API_KEY, "card": CARD, "amount": n}


def assert_no_canary(*services) -> None:
    for service in services:
        log = service.output()
        assert log, "no log to scan"
        for canary in CANARIES:
            assert canary not in log, f"a log line carries a payload value:\n{log}"


def unreadable_lines(service, approval_id: str) -> list[str]:
    return [
        line
        for line in service.output().splitlines()
        if "cannot be read" in line and f"approval_id={approval_id}" in line
    ]


# --- parsing (pure) ----------------------------------------------------------------------------


def test_a_page_is_read_item_by_item():
    good = {"id": new_approval_id(), "jobId": "j1", "queueName": "q", "status": "pending"}
    bad = {name: new_approval_id() for name in ("deep", "huge", "inf", "nan", "nul", "surrogate")}
    raw = {
        "deep": f'"payload": {DEEP}',
        "huge": f'"payload": {{"n": {HUGE}}}',
        "inf": '"payload": [1e400]',
        "nan": '"payload": {"n": NaN}',
        "nul": '"jobId": "j\\u0000"',
        "surrogate": '"queueName": "q\\ud800"',
    }
    items = [json.dumps(good)]
    for name, approval_id in bad.items():
        fields = {"id": approval_id, "jobId": "j", "queueName": "q", "status": "pending"}
        key = raw[name].split(":")[0].strip('"')
        fields.pop(key, None)
        items.append(json.dumps(fields)[:-1] + ", " + raw[name] + "}")
    body = '{"approvals": [' + ", ".join(items) + '], "nextCursor": "c"}'
    with pytest.raises(RecursionError):
        json.loads(body)  # what Rotor's pages met before: the whole page lost
    page = ApprovalPage.lenient(storable.loads(body))
    assert [a.id for a in page.approvals] == [good["id"]]
    assert page.next_cursor == "c"
    why = dict(page.unreadable)
    assert why == {
        bad["deep"]: f"payload: JSON nested deeper than {storable.MAX_DEPTH} levels",
        bad["huge"]: "payload: an integer over 4300 digits",
        bad["inf"]: "payload: a number out of range (1e400, NaN, Infinity)",
        bad["nan"]: "payload: a number out of range (1e400, NaN, Infinity)",
        bad["nul"]: "jobId: Value error, holds a NUL character, which the database cannot store",
        bad["surrogate"]: "queueName: Value error, holds a lone surrogate, which is not text",
    }


def test_bounded_loads_keeps_what_it_can_hold():
    at_limit = "[" * storable.MAX_DEPTH + "]" * storable.MAX_DEPTH
    assert storable.depth(storable.loads(at_limit)) == storable.MAX_DEPTH
    assert storable.unreadable_in(storable.loads(at_limit)) is None
    # Brackets and NaN inside strings are text; a 4,300-digit integer is still a number.
    text = json.dumps({"s": "[" * 5000 + "NaN", "n": int("9" * 4300), "f": 1.5e300})
    assert storable.loads(text) == json.loads(text)
    with pytest.raises(storable.NotJSON):
        storable.loads("[" * 100_000)  # never closes


def test_a_text_json_reads_directly_is_marked_as_the_careful_reading_marks_it():
    """Few brackets: json reads the text as it is, and marks what cannot be held the same."""
    for raw, why in [
        (f'{{"n": {"9" * 4301}}}', storable.TOO_LONG),
        ('{"n": 1e400}', storable.OUT_OF_RANGE),
        ('{"n": NaN}', storable.OUT_OF_RANGE),
        ("[-Infinity]", storable.OUT_OF_RANGE),
        ("[" * storable.MAX_DEPTH + "]" * storable.MAX_DEPTH, None),
    ]:
        assert storable.unreadable_in(storable.loads(raw)) == why
    for bad in ('{"n": 1,}', "[" * 200 + "1", b'{"a": "\xff"}'):
        with pytest.raises(storable.NotJSON) as refused:
            storable.loads(bad)
        assert type(refused.value) is storable.NotJSON  # not TooDeep: it nests 200 deep


# --- point 1: poison in Rotor's list -----------------------------------------------------------


def test_polling_goes_on_past_poison_and_reports_each_once(start_service, slack, rotor):
    service = start_service(make_policy(poll="200ms"), ROTOR_WEBHOOK_SECRET=None)
    first = rotor.create("payments", plain_payload(1))
    bad = {name: rotor.create("payments", payload)["id"] for name, payload in poison().items()}
    bad["nul"] = rotor.create("payments", plain_payload(2), job_id="job\x00x")["id"]
    second = rotor.create("payments", plain_payload(3))  # newest: the pass starts with it
    posted(slack, first["id"])  # by the poll: the full reconcile runs once an hour
    posted(slack, second["id"])
    # The poll logs once its page is recorded, which can be just after the outbox has posted.
    recorded = "poll: recorded a new approval approval_id=" + first["id"]
    wait_until(lambda: recorded in service.output(), what="the poll's log line")
    # Passes go on (each meets the poison again) and still post what arrives later.
    calls = rotor.list_calls
    wait_until(lambda: rotor.list_calls > calls + 3, what="more passes")
    later = rotor.create("payments", plain_payload(4))
    posted(slack, later["id"])
    assert all(not slack.find(i) for i in bad.values())
    assert stored(service.env["DATABASE_URL"], *bad.values()) == [None] * len(bad)
    # Reported once each: one line with the id, the metric, /readyz detail (ready all along).
    for approval_id in bad.values():
        assert len(unreadable_lines(service, approval_id)) == 1, service.output()
    assert metric(service, "rotor_slack_rotor_unreadable_items_total") == len(bad)
    ready = service.get("/readyz")
    assert ready.status_code == 200
    assert {i["id"] for i in ready.json()["unreadable"]["latest"]} == set(bad.values())
    assert ready.json()["unreadable"]["count"] == len(bad)
    assert_no_canary(service)


def test_sync_finishes_its_pass_and_the_list_answers_past_poison(start_service, slack, rotor):
    service = start_service(make_policy(sync_every="1s"))
    rotor.event_types = {"approval.pending"}  # decisions outside Slack: only the sync finds them
    known = rotor.enqueue("payments", plain_payload(1))
    posted(slack, known["id"])
    bad = [rotor.create("payments", payload)["id"] for payload in poison().values()]
    missed = rotor.create("payments", plain_payload(2))  # never delivered: the sync records it
    rotor.decide_outside(known["id"], "approved")
    # The pass reaches both halves: the missed approval recorded, the decision recorded.
    posted(slack, missed["id"], timeout=20)
    wait_until(
        lambda: stored(service.env["DATABASE_URL"], known["id"])[0].status == "approved",
        timeout=20,
        what="the decision made outside Slack recorded by the sync",
    )
    # /approvals lists the rest of the page.
    slack.slash(CAROL, "C0FINANCE", "")
    listing = wait_until(lambda: slack.ephemerals_for(CAROL), what="the list")[-1]
    listed = json.dumps(listing.blocks)
    assert missed["id"] in listed and "Could not list" not in listed
    assert not any(i in listed for i in bad)
    wait_until(lambda: rotor.lists_answered > 6, timeout=20, what="several passes")
    for approval_id in bad:
        assert len(unreadable_lines(service, approval_id)) == 1, service.output()
    assert metric(service, "rotor_slack_rotor_unreadable_items_total") == len(bad)
    assert service.get("/readyz").status_code == 200
    assert_no_canary(service)


def test_a_decision_event_for_a_poisoned_approval_is_reported_once(service, slack, rotor):
    """Read from Rotor after its decision event: unreadable, reported, and not read again and
    again (a retry cannot mend it); the next approval's event is handled as usual."""
    bad = rotor.create("payments", poison()["deep"])["id"]
    rotor.decide_outside(bad, "approved")
    wait_until(lambda: unreadable_lines(service, bad), what="the poisoned approval reported")
    reads = rotor.get_calls
    time.sleep(1.5)  # past the first retry's backoff (0.5 to 1 s)
    assert rotor.get_calls == reads
    good = rotor.create("payments", plain_payload(1))["id"]
    rotor.decide_outside(good, "rejected", "not needed")
    wait_until(lambda: stored(service.env["DATABASE_URL"], good)[0], what="the decision recorded")
    assert len(unreadable_lines(service, bad)) == 1
    assert stored(service.env["DATABASE_URL"], bad) == [None]
    assert "decision event: left to the sync" not in service.output()
    assert_no_canary(service)


# --- point 2: what the database refuses --------------------------------------------------------


def pending(approval_id: str, *, job: str = '"job-1"', queue: str = '"payments"', **more) -> str:
    """An approval.pending body as raw text, so it can carry what json.dumps would not write."""
    payload = more.get("payload", f'{{{SECRETS}, "amount": 5}}')
    workspace = more.get("workspace", '"ws_1"')
    return (
        '{"event": "approval.pending", "data": {'
        f'"approvalId": "{approval_id}", "jobId": {job}, "queueName": {queue}, '
        f'"workspaceId": {workspace}, "payload": {payload}}}}}'
    )


REFUSED = {
    "1e400": ({"payload": f'{{{SECRETS}, "amount": 1e400}}'}, "body: a number out of range"),
    "-1e400": ({"payload": f'{{{SECRETS}, "amount": -1e400}}'}, "body: a number out of range"),
    "NaN": ({"payload": f'{{{SECRETS}, "amount": NaN}}'}, "body: a number out of range"),
    "huge": ({"payload": f'{{{SECRETS}, "amount": {HUGE}}}'}, "body: an integer over 4300"),
    "deep": ({"payload": f'{{{SECRETS}, "rows": {DEEP}}}'}, "body: JSON nested deeper than"),
    "NUL job": ({"job": '"job\\u0000x"'}, "data.jobId: Value error, holds a NUL character"),
    "NUL queue": ({"queue": '"pay\\u0000"'}, "data.queueName: Value error, holds a NUL"),
    "NUL workspace": ({"workspace": '"ws\\u0000"'}, "data.workspaceId: Value error, holds a NUL"),
    "surrogate job": ({"job": '"job\\ud800"'}, "data.jobId: Input should be a valid string"),
}


def test_webhook_refuses_what_the_database_cannot_store_with_a_4xx(service, slack, rotor):
    refused = {}
    for name, (fields, message) in REFUSED.items():
        approval_id = new_approval_id()
        body = pending(approval_id, **fields)
        for _ in range(2):  # Rotor's redelivery gets the same answer: no 500 loop
            answer = send(service, rotor, body)
            assert answer.status_code == 422, (name, answer.text)
            assert answer.json()["error"].startswith(message), (name, answer.text)
        refused[name] = approval_id
    # A NUL inside payload text is stored as text, and posted.
    kept = new_approval_id()
    body = pending(kept, payload=f'{{{SECRETS}, "note": "a\\u0000b"}}')
    assert send(service, rotor, body).status_code == 202
    assert stored(service.env["DATABASE_URL"], kept)[0].payload["note"] == "a\x00b"
    posted(slack, kept)
    assert stored(service.env["DATABASE_URL"], *refused.values()) == [None] * len(refused)
    assert "webhook failed" not in service.output()
    metrics = service.get("/metrics").text
    assert 'rotor_slack_webhooks_total{outcome="error"}' not in metrics
    assert_no_canary(service)


def test_database_refusals_and_errors_carry_no_values(database_url):
    """Below the checks at the edge: what the database (or binding) still refuses is
    `DatabaseRefused`, and no SQLAlchemy error's text quotes its parameters."""

    def text(error: BaseException) -> str:
        return "".join(traceback.format_exception(error))

    async def go() -> list[str]:
        store = Store(database_url)
        try:
            await schema.upgrade(store)
            hostile = [
                {"payload": {"apiKey": API_KEY, "n": 10**5000}},  # JSON cannot write it
                {"payload": {"apiKey": API_KEY, "n": object()}},
                {"job_id": f"job {API_KEY}\ud800", "payload": {}},  # not text
            ]
            if database_url.startswith("postgresql"):  # SQLite stores these
                hostile += [
                    {"job_id": f"job {API_KEY}\x00", "payload": {}},
                    {"payload": {"apiKey": API_KEY, "n": float("inf")}},
                ]
            leaks = []
            for fields in hostile:
                values = {"job_id": "j", "queue_name": "q"} | fields
                approval = Approval(id=new_approval_id(), created_at=utcnow(), **values)
                try:
                    await store.approvals.record(approval, "C0")
                except DatabaseRefused as e:
                    leaks.append(text(e))
                else:
                    raise AssertionError(f"stored: {fields.keys()}")
            # Any other statement error (here NOT NULL) quotes no parameters either.
            try:
                async with store.session() as s:
                    row = {"id": new_approval_id(), "job_id": API_KEY, "queue_name": None}
                    await s.exec(insert(Approval).values(**row, created_at=utcnow()))
            except Exception as e:
                leaks.append(text(e))
            else:
                raise AssertionError("a NULL queue name was stored")
            return leaks
        finally:
            await store.close()

    for formatted in asyncio.run(go()):
        assert API_KEY not in formatted, formatted
        assert not re.search(r"\[parameters: ", formatted), formatted
