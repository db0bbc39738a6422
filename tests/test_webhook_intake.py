"""The webhook endpoint's answers and parsing, in-process on a real SQLite file (fast)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.routing import Route

from app import schema, signing
from app.config import parse_policy
from app.db import Store
from app.intake import Intake
from app.sandbox.rotor import new_approval_id, sign_webhook
from app.sandbox.run import new_secrets
from app.webhooks import MAX_DEPTH, WebhookError, depth, parse, webhook_endpoint
from tests.conftest import POLICY

SECRET = new_secrets()["ROTOR_WEBHOOK_SECRET"]


def event(**data) -> dict:
    fields = {"approvalId": new_approval_id(), "jobId": "job-1", "queueName": "ops"}
    fields.update({"payload": {"n": 1}} | data)
    return {"event": "approval.pending", "data": {k: v for k, v in fields.items() if v != ...}}


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("rotor_slack_webhooks_total", {"outcome": outcome})
    return value or 0.0


def deliver(
    database_url: str,
    bodies: list[str],
    migrate: bool = True,
    signed: bool = True,
    secret: str = SECRET,
    signed_with: str | None = None,
    names: tuple[str, str, str] = signing.ROTOR,
    signalled: list[str] | None = None,
):
    """Each body through the endpoint in order: [(status, json, headers, counted outcome)].
    Bodies are signed with `signed_with` (else `secret`) under the header `names`; the ids of
    decision events are appended to `signalled`."""
    signalled = [] if signalled is None else signalled

    async def go():
        store = Store(database_url)
        try:
            if migrate:
                await schema.upgrade(store)
            intake = Intake(store, parse_policy(POLICY), lambda: None)
            app = Starlette(
                routes=[
                    Route(
                        "/",
                        webhook_endpoint(secret, intake.accept, signalled.append),
                        methods=["POST"],
                    )
                ]
            )
            answers = []
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://rotor-slack"
            ) as client:
                for body in bodies:
                    before = {o: counted(o) for o in OUTCOMES}
                    key = signed_with or secret
                    headers = sign_webhook(key, body, names=names) if signed else {}
                    response = await client.post("/", content=body, headers=headers)
                    moved = [o for o in OUTCOMES if counted(o) != before[o]]
                    assert len(moved) == 1 and counted(moved[0]) == before[moved[0]] + 1
                    answers.append(
                        (response.status_code, response.json(), response.headers, moved[0])
                    )
            pending = [json.loads(b)["data"] for b in bodies if '"approval.pending"' in b]
            if not migrate:
                return answers, []
            return answers, [await store.approvals.get(d["approvalId"]) for d in pending]
        finally:
            await store.close()

    return asyncio.run(go())


OUTCOMES = [
    "accepted",
    "duplicate",
    "ignored",
    "unavailable_503",
    "error",
    "rejected_400",
    "rejected_401",
    "rejected_422",
    "decision",
    "test",
]


def test_new_then_duplicate_then_ignored(tmp_path):
    new = json.dumps(event(workspaceId="W1"))
    other = json.dumps({"event": "approval.decided", "data": {}})
    answers, rows = deliver(f"sqlite+aiosqlite:///{tmp_path / 'db'}", [new, new, other])
    assert [(s, j, o) for s, j, _, o in answers] == [
        (202, {"status": "accepted"}, "accepted"),
        (200, {"status": "duplicate"}, "duplicate"),
        (200, {"status": "ignored"}, "ignored"),
    ]
    data = json.loads(new)["data"]
    row = rows[0]
    assert (row.id, row.job_id, row.queue_name, row.payload, row.workspace_id) == (
        data["approvalId"],
        "job-1",
        "ops",
        {"n": 1},
        "W1",
    )
    assert row.created_at is not None


def test_unsigned_is_401(tmp_path):
    body = json.dumps(event())
    answers, _ = deliver(f"sqlite+aiosqlite:///{tmp_path / 'db'}", [body], signed=False)
    ((status, answer, _, outcome),) = answers
    assert (status, outcome) == (401, "rejected_401")
    assert answer["error"].startswith("signature check failed: ")


def test_signed_bodies_are_parsed_after_the_signature_check(tmp_path):
    # The signature is checked on the bytes: a signed body that is not JSON, or nested too
    # deep, is refused for what it is, not as a bad signature.
    bodies = ["not json", "[" * 5000 + "]" * 5000, json.dumps(event(jobId=""))]
    answers, _ = deliver(f"sqlite+aiosqlite:///{tmp_path / 'db'}", bodies)
    assert [(s, o) for s, _, _, o in answers] == [
        (400, "rejected_400"),
        (422, "rejected_422"),
        (422, "rejected_422"),
    ]
    assert answers[2][1] == {"error": "data.jobId: String should have at least 1 character"}


def test_database_down_is_503_with_retry_after(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'no such directory' / 'db'}"
    answers, _ = deliver(url, [json.dumps(event())], migrate=False)
    ((status, answer, headers, outcome),) = answers
    assert (status, answer, outcome) == (
        503,
        {"error": "database unavailable, try again"},
        "unavailable_503",
    )
    assert headers["Retry-After"] == "30"


def test_a_bug_is_answered_500_and_counted(tmp_path):
    # A schema mistake (no tables) is a bug to see, not an outage: 500, "error".
    answers, _ = deliver(
        f"sqlite+aiosqlite:///{tmp_path / 'db'}", [json.dumps(event())], migrate=False
    )
    ((status, answer, _, outcome),) = answers
    assert (status, answer, outcome) == (500, {"error": "internal error"}, "error")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"\xff\xfe", 400, "body is not JSON"),
        (b"{", 400, "body is not JSON"),
        (b"[]", 400, 'body must be an object with an "event" string'),
        (b'{"event": 1}', 400, 'body must be an object with an "event" string'),
        (b'{"data": {}}', 400, 'body must be an object with an "event" string'),
        (b"[" * 100_000, 422, f"body: JSON nested deeper than {MAX_DEPTH} levels"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), 422, "body: JSON nested deeper than"),
        (
            json.dumps(event(approvalId="apv_../x")).encode(),
            422,
            "data.approvalId: String should match pattern",
        ),
        (
            json.dumps(event(jobId="")).encode(),
            422,
            "data.jobId: String should have at least 1 character",
        ),
        (
            json.dumps(event(jobId="j" * 501)).encode(),
            422,
            "data.jobId: String should have at most 500 characters",
        ),
        (
            json.dumps(event(queueName="")).encode(),
            422,
            "data.queueName: String should have at least 1 character",
        ),
        (
            json.dumps(event(queueName="q" * 501)).encode(),
            422,
            "data.queueName: String should have at most 500 characters",
        ),
        (json.dumps(event(payload=...)).encode(), 422, "data.payload: Field required"),
        (json.dumps({"event": "approval.pending"}).encode(), 422, "data: Input should be"),
    ],
)
def test_parse_refuses_with_the_reason(body, status, message):
    with pytest.raises(WebhookError) as refused:
        parse(body)
    assert refused.value.status == status
    assert refused.value.message.startswith(message), refused.value.message


def test_parse_takes_the_deepest_allowed_and_the_longest_fields():
    deep = {
        "event": "approval.pending",
        "data": event(jobId="j" * 500, queueName="q" * 500)["data"],
    }
    inner = 1
    for _ in range(MAX_DEPTH - 2):  # the document and data are two levels: 256 in all
        inner = [inner]
    deep["data"]["payload"] = inner
    assert depth(deep) == MAX_DEPTH
    parsed = parse(json.dumps(deep).encode())
    assert (parsed.job_id, parsed.queue_name) == ("j" * 500, "q" * 500)
    assert parsed.workspace_id is None
    assert parse(json.dumps({"event": "approval.decided"}).encode()) is None
    assert parse(json.dumps({"event": "job.completed", "data": {}}).encode()) is None


def decision(event: str, **data) -> str:
    return json.dumps({"event": event, "data": data})


def test_decision_events_are_signals_answered_202_whatever_else_they_carry(tmp_path):
    # Only approvalId is documented: the rest is read from Rotor, so it is not even validated.
    approved, rejected = new_approval_id(), new_approval_id()
    signalled: list[str] = []
    bodies = [
        decision("approval.approved", approvalId=approved, status=7, decidedBy={"x": []}),
        decision("approval.rejected", approvalId=rejected, reason="no"),
        decision("approval.approved", approvalId=approved),  # redelivered
        decision("approval.rejected", approvalId="apv_../../etc"),
        decision("approval.approved"),
        json.dumps({"event": "approval.rejected", "data": "apv"}),
    ]
    answers, _ = deliver(f"sqlite+aiosqlite:///{tmp_path / 'db'}", bodies, signalled=signalled)
    assert [(s, j, o) for s, j, _, o in answers] == [
        (202, {"status": "accepted"}, "decision"),
        (202, {"status": "accepted"}, "decision"),
        (202, {"status": "accepted"}, "decision"),
        # Verified but unusable: 2xx, so Rotor does not retry it forever.
        (200, {"status": "ignored"}, "ignored"),
        (200, {"status": "ignored"}, "ignored"),
        (200, {"status": "ignored"}, "ignored"),
    ]
    assert signalled == [approved, rejected, approved]


def test_webhook_test_is_answered_and_logged(tmp_path, caplog):
    body = json.dumps({"event": "webhook.test", "data": {"anything": [1]}})
    with caplog.at_level("INFO", logger="app.webhooks"):
        answers, _ = deliver(f"sqlite+aiosqlite:///{tmp_path / 'db'}", [body])
    assert [(s, j, o) for s, j, _, o in answers] == [(200, {"status": "ok"}, "test")]
    lines = [r.getMessage() for r in caplog.records if "webhook.test" in r.getMessage()]
    assert lines == ["webhook.test: a verified test event arrived: the webhook secret is right"]


@pytest.mark.parametrize("names", [signing.ROTOR, signing.STANDARD], ids=["rotor", "standard"])
@pytest.mark.parametrize(
    ("secret", "signed_with"),
    [
        ("whsec_" + base64.b64encode(b"k" * 24).decode(), None),
        ("a plain secret", None),  # three plain secrets: the first signs
        ("rotor-plain-secret", None),
        # Rotation: the old and the new, either signs.
        ("whsec_" + base64.b64encode(b"old" * 8).decode() + " new-plain", "new-plain"),
        ("whsec_" + base64.b64encode(b"old" * 8).decode() + " new-plain", None),
    ],
)
def test_both_header_families_and_every_secret_form_verify(tmp_path, names, secret, signed_with):
    answers, rows = deliver(
        f"sqlite+aiosqlite:///{tmp_path / 'db'}",
        [json.dumps(event())],
        secret=secret,
        signed_with=signed_with,
        names=names,
    )
    assert [(s, o) for s, _, _, o in answers] == [(202, "accepted")]
    assert rows[0] is not None


@pytest.mark.parametrize(
    ("secret", "signed_with"),
    [
        (
            "whsec_" + base64.b64encode(b"k" * 24).decode(),
            "whsec_" + base64.b64encode(b"j" * 24).decode(),
        ),
        # The same text read the other way: a plain secret is not base64-decoded.
        ("a2V5a2V5a2V5", "whsec_a2V5a2V5a2V5"),
        ("old new", "other"),
    ],
)
def test_a_signature_from_another_secret_is_401(tmp_path, secret, signed_with):
    answers, _ = deliver(
        f"sqlite+aiosqlite:///{tmp_path / 'db'}",
        [json.dumps(event())],
        secret=secret,
        signed_with=signed_with,
    )
    ((status, answer, _, outcome),) = answers
    assert (status, outcome) == (401, "rejected_401")
    assert answer == {"error": "signature check failed: no signature matches the webhook secret"}
