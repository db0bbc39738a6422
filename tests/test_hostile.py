"""Hostile input: poison payloads, forged button values and response_urls (issue: hostile input)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app import audit
from app.db.models import Approval, Status
from app.interactions.respond import ResponseUrls
from app.sandbox.stack import ThreadServer
from app.slack.blocks.text import DEEP, pretty_payload
from app.slack.ids import approval_of
from tests.conftest import CAROL, MALLORY, make_policy, posted, preview_text, wait_until
from tests.test_webhooks import send

ID = "apv_" + "a" * 32


def nested(levels: int):
    value: object = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def test_deep_payloads_render_bounded():
    text = pretty_payload({"deep": nested(5000)})
    assert DEEP in text and "bottom" not in text


def test_button_must_name_the_approval_its_action_names():
    assert approval_of({"action_id": f"approve:{ID}", "value": ID}) == ID
    other = "apv_" + "b" * 32
    assert approval_of({"action_id": f"approve:{ID}", "value": other}) is None
    assert approval_of({"action_id": "approve:../../v1/approvals?x", "value": "../../v1"}) is None
    assert approval_of({"action_id": f"approve:{ID}", "value": None}) is None


def test_response_urls_only_on_slack_or_its_stand_in():
    real = ResponseUrls("https://slack.com/api/")
    assert real.trusted("https://hooks.slack.com/actions/T0/1/abc")
    for url in (
        "https://evil.example/actions",
        "http://hooks.slack.com/actions/x",  # not TLS
        "https://hooks.slack.com@evil.example/x",
        "https://hooks.slack.com.evil.example/x",
        "https://evil.example/?https://hooks.slack.com/",
        "javascript:alert(1)",
        12,
        None,
    ):
        assert real.trusted(url) is None, url
    stand_in = ResponseUrls("http://127.0.0.1:4567/api/")
    assert stand_in.trusted("http://127.0.0.1:4567/response/1")
    assert stand_in.trusted("http://127.0.0.1:4568/response/1") is None


def test_webhook_refuses_json_nested_too_deep(service, slack, rotor):
    for levels in (300, 5000):  # the second is past what Python's parser follows
        body = '{"event": "approval.pending", "data": ' + "[" * levels + "]" * levels + "}"
        response = send(service, rotor, body)
        assert response.status_code == 422, levels
        assert "nested deeper" in response.json()["error"]
    assert service.get("/healthz").status_code == 200
    metrics = service.get("/metrics").text
    assert 'rotor_slack_webhooks_total{outcome="rejected_422"} 2.0' in metrics


def test_deep_payload_from_rotor_blocks_nothing(start_service, slack, rotor):
    """Reached through the sync (no webhook), a payload nested 200 levels deep is posted with
    its deep part elided, the approval after it in the same channel is posted too, and the
    unfiltered /approvals list still answers. (Deeper than the webhook's bound: test_poison.)"""
    deep = rotor.create("payments", {"rows": nested(200)})
    plain = rotor.create("payments", {"amount": 5})
    start_service(make_policy(sync_every="1s"))
    assert DEEP in preview_text(posted(slack, deep["id"], timeout=20))
    posted(slack, plain["id"], timeout=20)
    slack.slash(CAROL, "C0FINANCE", "")
    listing = wait_until(lambda: slack.ephemerals_for(CAROL), what="the list")[-1]
    listed = json.dumps(listing.blocks)
    assert deep["id"] in listed and plain["id"] in listed


def test_forged_clicks_decide_nothing_and_post_nowhere_else(service, slack, rotor):
    hits: list[str] = []

    async def record(request):
        hits.append(request.url.path)
        return PlainTextResponse("ok")

    elsewhere = ThreadServer(Starlette(routes=[Route("/{p:path}", record, methods=["POST"])]))
    try:
        target = rotor.enqueue("ops", {})
        other = rotor.enqueue("ops", {})
        message = posted(slack, target["id"])
        # The button for one approval, its value naming another: ignored.
        slack.click(CAROL, message, "approve", forge={"value": other["id"]})
        wait_until(lambda: "disagree" in service.output(), what="the forged click logged")
        # A refusal aimed at a response_url outside Slack: dropped, never POSTed to.
        slack.click(
            MALLORY,
            posted(slack, target["id"]),
            "approve",
            forge={"response_url": elsewhere.url + "/x"},
        )
        wait_until(lambda: "outside Slack" in service.output(), what="the foreign URL logged")
        # The same person's real click still works afterwards.
        slack.click(CAROL, message, "approve")
        wait_until(lambda: rotor.status(target["id"]) == "approved", what="the real decision")
        assert rotor.decisions == [(target["id"], "approved")]
        assert rotor.status(other["id"]) == "pending"
        assert hits == []
    finally:
        elsewhere.stop()


@example(lead=" ", start="=", rest="HYPERLINK(0)")
@example(lead="\u00a0", start="@", rest="SUM(1)")
@example(lead="", start="=", rest="x\r=1+1")  # a bare CR must not start a row of its own
@given(
    lead=st.text(alphabet=" \t\r\n\u00a0\u2003\u3000\u200b\ufeff", max_size=4),
    start=st.sampled_from("=+-@"),
    rest=st.text(max_size=20),
)
def test_audit_csv_cells_never_start_a_formula_behind_whitespace(lead, start, rest):
    """A reason (or job id) that a spreadsheet would run as a formula, whatever whitespace or
    invisible characters come before it, is written behind a quote."""
    hostile = lead + start + rest
    approval = Approval(
        id=ID,
        job_id=hostile,
        queue_name="ops",
        payload={},
        status=Status.REJECTED,
        decided_by=CAROL,
        reason=hostile,
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    written = audit.as_csv([audit.row(approval, [])])
    table = list(csv.DictReader(io.StringIO(written, newline="")))
    assert table[0]["reason"] == table[0]["job_id"] == "'" + hostile
