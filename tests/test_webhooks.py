"""POST /rotor/webhook: verification, validation, dedup, routing — end to end over HTTP."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app import signing
from app.sandbox.rotor import new_approval_id, sign_webhook
from tests.conftest import (
    LIVE,
    drained,
    metric,
    mrkdwn_texts,
    posted,
    preview_text,
    wait_until,
)


def event(queue="ops", payload=None, **data):
    body = {
        "approvalId": new_approval_id(),
        "jobId": "job_1",
        "queueName": queue,
        "payload": {"x": 1} if payload is None else payload,
    }
    body.update(data)
    return {"event": "approval.pending", "data": body}


def send(service, rotor, document, headers=None):
    body = json.dumps(document) if not isinstance(document, str) else document
    return service.post(
        "/rotor/webhook", content=body, headers=headers or sign_webhook(rotor.webhook_secret, body)
    )


def test_new_approval_is_accepted_and_posted_to_the_queue_channel(service, slack, rotor):
    approval = rotor.create("payments", {"amount": 120, "currency": "EUR"}, job_id="job_pay_1")
    response = rotor.deliver(approval["id"])
    assert response.status_code == 202
    message = posted(slack, approval["id"])
    assert message.channel == "C0FINANCE"
    assert message.metadata == {
        "event_type": "rotor_approval",
        "event_payload": {"approval_id": approval["id"]},
    }
    assert "job_pay_1" in message.text and "payments" in message.text
    actions = next(b for b in message.blocks if b["type"] == "actions")
    approve, reject = actions["elements"][:2]
    assert approve["style"] == "primary" and "confirm" in approve
    assert reject["style"] == "danger"
    assert '"currency": "EUR"' in preview_text(message)
    # A first post goes straight out: no lookup of earlier posts (conversations.history is
    # rate-limited hard, and only a retry after an unclear failure needs it).
    assert slack.count("conversations.history") == 0


def test_unrouted_queue_goes_to_the_default_channel(service, slack, rotor):
    approval = rotor.enqueue("unknown-queue", {"a": 1})
    assert posted(slack, approval["id"]).channel == "C0APPROVALS"


def test_redelivery_posts_once(service, slack, rotor):
    approval = rotor.create("ops", {"n": 1})
    assert rotor.deliver(approval["id"]).status_code == 202
    for _ in range(3):
        assert rotor.deliver(approval["id"]).status_code == 200
    posted(slack, approval["id"])
    drained(service)  # the one post task is done; a duplicate would have queued a second
    assert len(slack.find(approval["id"])) == 1
    assert slack.count("chat.postMessage") == 1


def test_concurrent_redelivery_posts_once(service, slack, rotor):
    approval = rotor.create("ops", {"n": 2})
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(r.status_code for r in pool.map(rotor.deliver, [approval["id"]] * 8))
    assert codes == [200] * 7 + [202]
    posted(slack, approval["id"])
    drained(service)
    assert len(slack.find(approval["id"])) == 1
    assert slack.count("chat.postMessage") == 1


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda rotor, body: {"content-type": "application/json"}, id="unsigned"),
        pytest.param(
            lambda rotor, body: sign_webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", body),
            id="forged",
        ),
        pytest.param(
            lambda rotor, body: sign_webhook(
                rotor.webhook_secret, body, datetime.now(UTC) - timedelta(minutes=6)
            ),
            id="stale",
        ),
        pytest.param(
            lambda rotor, body: sign_webhook(rotor.webhook_secret, body.replace("ops", "opz")),
            id="tampered",
        ),
        pytest.param(
            lambda rotor, body: {
                **sign_webhook(rotor.webhook_secret, body),
                "rotor-webhook-signature": "v1,!!",
            },
            id="garbled",
        ),
        pytest.param(
            lambda rotor, body: {
                **sign_webhook(rotor.webhook_secret, body, names=signing.STANDARD),
                "webhook-signature": "v1,!!",
            },
            id="garbled-standard",
        ),
        pytest.param(
            # A valid standard signature cannot stand in for Rotor's garbled one.
            lambda rotor, body: {
                **sign_webhook(rotor.webhook_secret, body, names=signing.STANDARD),
                "rotor-webhook-id": "msg_x",
                "rotor-webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
                "rotor-webhook-signature": "v1,!!",
            },
            id="mixed-families",
        ),
    ],
)
def test_bad_signatures_are_refused_and_post_nothing(service, slack, rotor, make_headers):
    document = event("ops")
    body = json.dumps(document)
    response = send(service, rotor, body, make_headers(rotor, body))
    assert response.status_code == 401
    # A webhook's task is queued before it is answered: none is there, so none will be posted.
    assert metric(service, "rotor_slack_outbox_depth") == 0
    assert slack.find(document["data"]["approvalId"]) == []
    assert slack.count("chat.postMessage") == 0


@pytest.mark.parametrize(
    ("document", "status"),
    [
        ("not json", 400),
        ('["a list"]', 400),
        ({"data": {}}, 400),
        (event(approvalId="apv_123"), 422),
        (event(approvalId="apv_" + "G" * 32), 422),
        (event(jobId=""), 422),
        (event(queueName=7), 422),
        ({"event": "approval.pending", "data": {"approvalId": new_approval_id()}}, 422),
        ({"event": "approval.pending", "data": "nope"}, 422),
    ],
)
def test_malformed_bodies_get_4xx_and_the_service_keeps_serving(
    service, slack, rotor, document, status
):
    response = send(service, rotor, document)
    assert response.status_code == status
    assert "error" in response.json()
    # Still serving: a good webhook right after is accepted and posted.
    approval = rotor.enqueue("ops", {"after": "bad"})
    posted(slack, approval["id"])
    assert slack.count("chat.postMessage") == 1


def test_other_event_types_are_ignored(service, slack, rotor):
    response = send(service, rotor, {"event": "job.completed", "data": {"jobId": "j"}})
    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    assert metric(service, "rotor_slack_outbox_depth") == 0
    assert slack.count("chat.postMessage") == 0


def test_bodies_over_one_mebibyte_are_refused(service, slack, rotor):
    document = event("ops", payload={"blob": "x" * (1024 * 1024)})
    assert refused(lambda: send(service, rotor, document))

    # Without a Content-Length (chunked), the limit holds all the same.
    body = json.dumps(document).encode()

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    headers = sign_webhook(rotor.webhook_secret, body.decode())
    url = service.url + "/rotor/webhook"
    assert refused(lambda: httpx.post(url, content=chunks(), headers=headers, trust_env=False))
    assert service.get("/healthz").status_code == 200
    assert not slack.messages


def refused(post) -> bool:
    """413, or the connection closed while the client was still sending: the service does not
    read the rest of a body it refused, and the peer's reset can beat the answer to the client."""
    try:
        return post().status_code == 413
    except httpx.TransportError:
        return True


def test_hostile_payload_posts_a_valid_message_with_nothing_live(service, slack, rotor):
    deep: object = "bottom"
    for _ in range(200):
        deep = {"d": deep}
    payload = {
        "note": "<!channel> <!here> <@U0CAROL> <#C0FINANCE> <!subteam^S0FINANCE>",
        "link": "<https://evil.example|click me> & more",
        "big": "A" * 100_000,
        "deep": deep,
        "password": "hunter2",
        "nested": {"api_key": "sk_live_123", "Authorization": "Bearer abc"},
    }
    approval = rotor.enqueue("<!channel> queue", payload, job_id="<@U0CAROL>")
    message = posted(slack, approval["id"])
    for text in [message.text, *mrkdwn_texts(message.blocks)]:
        assert not LIVE.search(text), text
    dumped = json.dumps(message.blocks)
    assert "hunter2" not in dumped and "sk_live_123" not in dumped and "Bearer abc" not in dumped
    # Cut to fit, with the full payload one click away.
    assert any(
        e.get("action_id", "").startswith("view_payload")
        for b in message.blocks
        if b["type"] == "actions"
        for e in b["elements"]
    )


def test_health_and_readiness(service):
    assert service.get("/healthz").text == "ok"
    assert service.get("/readyz").json() == {"ready": True}
    metrics = service.get("/metrics").text
    assert "rotor_slack_outbox_depth" in metrics


def test_metrics_count_webhook_outcomes(service, slack, rotor):
    approval = rotor.enqueue("ops", {})
    rotor.deliver(approval["id"])
    send(service, rotor, "not json")
    text = wait_until(
        lambda: (t := service.get("/metrics").text) and 'outcome="duplicate"' in t and t
    )
    assert 'rotor_slack_webhooks_total{outcome="accepted"} 1.0' in text
    assert 'rotor_slack_webhooks_total{outcome="duplicate"} 1.0' in text
    assert 'rotor_slack_webhooks_total{outcome="rejected_400"} 1.0' in text
