"""Slack over Socket Mode: no inbound port for Slack. The stand-in hands people's requests to the
service as envelopes over the socket the service opened, and waits for their acks."""

from __future__ import annotations

import pytest

from app.sandbox.slack_people import sign_slack
from tests.conftest import CAROL, DAVE, wait_until
from tests.test_decisions import decided, outcome
from tests.test_home import home
from tests.test_slash import listed_ids, listing

APP_TOKEN = "xapp-1-A0ROTORSLACK-1-sandbox"


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'rotor-slack.db'}"


@pytest.fixture
def socket_service(start_service, slack):
    slack.app_token = APP_TOKEN
    service = start_service(SLACK_APP_TOKEN=APP_TOKEN)
    slack.app_url = ""  # nothing may go over HTTP
    return service


def test_click_reject_modal_and_slash_command_over_the_socket(socket_service, slack, rotor, keys):
    # No Request URL: even a well signed request finds nothing there.
    signed = sign_slack(keys["SLACK_SIGNING_SECRET"], "command=%2Fapprovals")
    assert (
        socket_service.post(
            "/slack/events", content=b"command=%2Fapprovals", headers=signed
        ).status_code
        == 404
    )
    approve = rotor.enqueue("payments", {"amount": 5})
    message = wait_until(lambda: slack.find(approve["id"]), what="the post")[0]
    assert slack.click(CAROL, message, "approve").status_code == 200
    wait_until(lambda: rotor.status(approve["id"]) == "approved")
    assert f"Approved* by <@{CAROL}>" in outcome(decided(slack, approve["id"]))

    reject = rotor.enqueue("payments", {"amount": 6})
    message = wait_until(lambda: slack.find(reject["id"]), what="the post")[0]
    assert slack.click(DAVE, message, "reject").status_code == 200
    view_id = wait_until(lambda: next(iter(slack.views), None), what="the modal")
    # An inline error comes back in the ack, as over HTTP.
    refused = slack.submit_view(DAVE, view_id, {"reason": {"reason_input": " "}})
    assert refused.json()["response_action"] == "errors"
    assert slack.submit_view(DAVE, view_id, {"reason": {"reason_input": "no"}}).content == b""
    wait_until(lambda: rotor.status(reject["id"]) == "rejected")

    assert slack.slash(CAROL, "C0OPS", "approved").status_code == 200
    assert listed_ids(listing(slack, CAROL)) == [approve["id"]]

    # The Home tab: app_home_opened arrives as an events_api envelope; its buttons work too.
    ops = rotor.enqueue("ops", {"host": "db-1"})
    wait_until(lambda: slack.find(ops["id"]), what="the post")
    assert slack.open_home(CAROL).status_code == 200
    tab = home(slack, CAROL, "1 approval")
    assert slack.click(CAROL, tab, "approve", ops["id"]).status_code == 200
    wait_until(lambda: rotor.status(ops["id"]) == "approved")
    assert slack.socket.redelivered == 0


def notices(slack, user) -> list[str]:
    return [e.text for e in slack.ephemerals_for(user)]


def test_a_dropped_socket_reconnects_and_loses_nothing(socket_service, slack, rotor):
    rotor.accept_repeats = True  # a second decision would be applied and counted
    first = rotor.enqueue("ops", {"n": 1})
    message = wait_until(lambda: slack.find(first["id"]), what="the post")[0]
    slack.socket.drop()
    # Sent while no socket is open: delivered once the service has reconnected by itself.
    assert slack.click(CAROL, message, "approve").status_code == 200
    wait_until(lambda: rotor.status(first["id"]) == "approved")

    second = rotor.enqueue("ops", {"n": 2})
    message = wait_until(lambda: slack.find(second["id"]), what="the post")[0]
    slack.socket.cut_after_send = 1  # the socket drops before the service's ack reaches Slack
    assert slack.click(CAROL, message, "approve").status_code == 200
    assert slack.socket.redelivered == 1
    wait_until(lambda: rotor.status(second["id"]) == "approved")
    # The click arrived twice; the second was refused without calling Rotor, and said so.
    wait_until(lambda: notices(slack, CAROL), what="the repeated click answered")
    assert rotor.decision_calls == [(first["id"], "approved"), (second["id"], "approved")]
    assert slack.socket.connections() == 1


def test_two_replicas_on_one_app_token_share_the_envelopes(start_service, slack, rotor):
    slack.app_token = APP_TOKEN
    start_service(SLACK_APP_TOKEN=APP_TOKEN), start_service(SLACK_APP_TOKEN=APP_TOKEN)
    slack.app_url = ""
    wait_until(lambda: slack.socket.connections() == 2, what="both replicas connected")
    approvals = [rotor.enqueue("ops", {"i": i}) for i in range(6)]
    for approval in approvals:
        message = wait_until(lambda a=approval: slack.find(a["id"]), what="the post")[0]
        assert slack.click(CAROL, message, "approve").status_code == 200
    for approval in approvals:
        wait_until(lambda a=approval: rotor.status(a["id"]) == "approved")
    assert sorted(rotor.decision_calls) == sorted((a["id"], "approved") for a in approvals)
    # Each envelope went to one connection, and both replicas took their share.
    acks = slack.socket.acks_by_connection()
    assert sum(acks.values()) == 6 and all(acks.values()), acks
