"""Approvals polled from Rotor: no webhook secret, no webhook route, nothing inbound from Rotor."""

from __future__ import annotations

import time

from app.sandbox.rotor import sign_webhook
from tests.conftest import drained, make_policy, wait_until

POLLED = make_policy(poll="200ms")  # the full reconcile stays at 1h: only the poll finds them


def test_approvals_arrive_by_polling_without_webhooks(start_service, slack, rotor, keys):
    service = start_service(POLLED, ROTOR_WEBHOOK_SECRET=None)
    body = rotor.event_body(rotor.create("ops", {})["id"])
    signed = sign_webhook(keys["ROTOR_WEBHOOK_SECRET"], body)
    assert service.post("/rotor/webhook", content=body, headers=signed).status_code == 404
    # More than two pages of Rotor's list, none known yet: the first pass reads them all.
    first = [rotor.create("ops", {"i": i})["id"] for i in range(44)]
    wait_until(lambda: all(slack.find(a) for a in first), what="the first batch posted")
    later = [rotor.create("payments", {"i": i})["id"] for i in range(3)]
    wait_until(lambda: all(slack.find(a) for a in later), what="the later ones posted")
    drained(service)
    assert all(len(slack.find(a)) == 1 for a in first + later)
    # A pass that meets a known approval on its first page reads no further: one call a pass.
    calls, start = rotor.list_calls, time.monotonic()
    time.sleep(1.0)
    passes = (time.monotonic() - start) / 0.2 + 1
    assert rotor.list_calls - calls <= passes


def test_without_a_webhook_secret_serving_needs_polling(start_service):
    try:
        start_service(ROTOR_WEBHOOK_SECRET=None)
    except RuntimeError as e:
        assert "ROTOR_WEBHOOK_SECRET: required, not set: " in str(e)
        assert "or set [sync] poll in the policy file" in str(e)
    else:
        raise AssertionError("the service started with no way to hear of approvals")
