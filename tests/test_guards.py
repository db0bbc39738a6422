"""Guards before a body is read (app/asgi.py, app/serving.py), against the real service over raw
sockets: a client that declares a body and sends only part of it sees what the service does
before the rest arrives."""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from app import signing
from app.asgi import BODY_SECONDS, BUFFER_BYTES
from app.sandbox.rotor import new_approval_id, sign_webhook
from app.sandbox.slack_people import sign_slack
from app.sandbox.stack import free_port
from app.serving import HEADER_SECONDS, WAITING_MAX
from app.webhooks import MAX_BODY
from tests.conftest import wait_until

MIB = 1024 * 1024


@pytest.fixture
def database_url(tmp_path) -> str:
    """SQLite only: the guards act before the database, and one test breaks the file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'rotor-slack.db'}"


def upload(service, path: str, headers: dict[str, str], declared: int, body: bytes = b""):
    """A connection that has sent the headers of a POST declaring `declared` bytes, and `body`."""
    address = urlsplit(service.url)
    sock = socket.create_connection((address.hostname, address.port))
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {declared}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def answer(sock: socket.socket, timeout: float) -> tuple[int, str] | None:
    """(status, head) of the response on `sock`, None if none comes within `timeout`."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        return None
    if not data:
        return None
    head = data.split(b"\r\n\r\n")[0].decode().lower()
    return int(head.split()[1]), head


def fresh_looking(names: tuple[str, str, str] = signing.ROTOR) -> dict[str, str]:
    """Signature headers (Rotor's names, or `signing.STANDARD`) that pass every check but the
    signature itself."""
    msg_id, stamp, signature = names
    return {
        msg_id: "msg_flood",
        stamp: str(int(time.time())),
        signature: "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }


def webhook(rotor, size: int = 0) -> tuple[str, dict[str, str]]:
    data = {"approvalId": new_approval_id(), "jobId": "j", "queueName": "ops"}
    body = json.dumps({"event": "approval.pending", "data": data | {"payload": "x" * size}})
    return body, sign_webhook(rotor.webhook_secret, body)


def counted(service, outcome: str) -> float:
    prefix = f'rotor_slack_webhooks_total{{outcome="{outcome}"}} '
    lines = service.get("/metrics", ops=True).text.splitlines()
    return next((float(line.split()[-1]) for line in lines if line.startswith(prefix)), 0.0)


def test_requests_without_fresh_signature_headers_are_refused_before_their_body(
    service, rotor, keys
):
    stale = datetime.now(UTC) - timedelta(minutes=6)
    slack_stale = sign_slack(keys["SLACK_SIGNING_SECRET"], "x", int(stale.timestamp()))
    cases = [
        ("/rotor/webhook", {}),
        ("/rotor/webhook", sign_webhook(rotor.webhook_secret, "x", stale)),
        ("/rotor/webhook", fresh_looking() | {"rotor-webhook-timestamp": "soon"}),
        ("/rotor/webhook", sign_webhook(rotor.webhook_secret, "x", stale, signing.STANDARD)),
        ("/rotor/webhook", fresh_looking(signing.STANDARD) | {"webhook-timestamp": "soon"}),
        # One family half there: its missing headers are named, the other family is not mixed in.
        (
            "/rotor/webhook",
            {"rotor-webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
        ),
        ("/slack/events", {}),
        ("/slack/events", slack_stale),
        ("/slack/events", {"X-Slack-Request-Timestamp": str(int(time.time()))}),
    ]
    for path, headers in cases:
        started = time.monotonic()
        # A 1 MiB body is declared and none of it sent: the answer cannot wait for it.
        result = answer(upload(service, path, headers, MAX_BODY), timeout=BODY_SECONDS)
        assert result and result[0] == 401, (path, headers, result)
        assert time.monotonic() - started < BODY_SECONDS / 2
    assert counted(service, "rejected_401") == 6

    # A flood of them writes a handful of log lines, not one each.
    for _ in range(100):
        assert service.post("/rotor/webhook", content="{}").status_code == 401
    assert counted(service, "rejected_401") == 106
    lines = service.output().splitlines()
    refusals = [line for line in lines if "/rotor/webhook answered 401" in line]
    assert 1 <= len(refusals) <= 6, refusals
    assert "Traceback" not in service.output()


def test_buffer_budget_body_deadline_and_size_limit(service, slack, rotor):
    fits = BUFFER_BYTES // MAX_BODY
    extra = 8
    # Stalled uploads with fresh-looking headers: as many as the budget holds are admitted,
    # the rest are answered 503 at once instead of being buffered.
    stalled = [
        upload(service, "/rotor/webhook", fresh_looking(signing.STANDARD), MAX_BODY, b"{" * 1000)
        for _ in range(fits + extra)
    ]
    started = time.monotonic()
    half_headers = socket.create_connection(stalled[0].getpeername())
    half_headers.sendall(b"POST /rotor/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answered: dict[socket.socket, tuple[int, str] | None] = {}
    deadline = time.monotonic() + 10
    while len(answered) < extra and time.monotonic() < deadline:
        waiting = [sock for sock in stalled if sock not in answered]
        for sock in select.select(waiting, [], [], 0.5)[0]:
            answered[sock] = answer(sock, timeout=1)
    assert [r and r[0] for r in answered.values()] == [503] * extra, answered
    assert all("retry-after: 10" in head for _, head in answered.values())
    admitted = [sock for sock in stalled if sock not in answered]

    # Small bodies do not need the budget: a real webhook still gets through at once.
    body, headers = webhook(rotor)
    assert service.post("/rotor/webhook", content=body, headers=headers).status_code == 202
    # A declared body over the limit is refused unread, as before.
    too_big = upload(service, "/rotor/webhook", fresh_looking(), MAX_BODY + 1)
    assert answer(too_big, timeout=2)[0] == 413
    # A client that gives up mid-body leaves no traceback and gives its share back.
    admitted.pop().close()

    # The admitted ones run out of time: 408, and the budget is free again.
    timed_out = [answer(sock, timeout=BODY_SECONDS + 5) for sock in admitted]
    assert [r and r[0] for r in timed_out] == [408] * len(admitted)
    assert time.monotonic() - started > BODY_SECONDS - 1
    body, headers = webhook(rotor, size=512 * 1024)
    assert service.post("/rotor/webhook", content=body, headers=headers).status_code == 202

    # A header block never finished is closed, not kept for ever.
    half_headers.settimeout(HEADER_SECONDS + 5)
    assert half_headers.recv(100) == b""

    assert counted(service, "rejected_503") == extra
    assert counted(service, "rejected_408") == len(admitted)
    assert counted(service, "rejected_413") == 1
    assert counted(service, "accepted") == 2
    assert service.get("/healthz").status_code == 200
    assert "Traceback" not in service.output()


def test_an_unexpected_failure_is_answered_500_and_counted(service, rotor, database_url):
    database = database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as db:  # the database breaks under the running service
        db.execute("ALTER TABLE approvals RENAME TO approvals_gone")
    body, headers = webhook(rotor)
    response = service.post("/rotor/webhook", content=body, headers=headers)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    wait_until(lambda: counted(service, "error") == 1, what="the 500 counted")


def received(sock: socket.socket) -> bytes:
    """What the server sent before closing; a close with unread data left is a reset."""
    try:
        return sock.recv(100)
    except ConnectionResetError:
        return b""


def test_connections_that_never_finish_their_headers_are_bounded(service):
    port = urlsplit(service.url).port
    half = []
    for _ in range(WAITING_MAX + 100):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /rotor/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        half.append(sock)
    # Beyond WAITING_MAX the oldest are closed at once, not after HEADER_SECONDS.
    started, closed = time.monotonic(), set()
    while len(closed) < 100 and time.monotonic() - started < HEADER_SECONDS * 0.8:
        for sock in select.select([s for s in half if s not in closed], [], [], 0.5)[0]:
            assert received(sock) == b""  # closed, with nothing sent
            closed.add(sock)
    # The oldest ones (the server may take a few out of order from its backlog under load).
    assert len(closed) == 100 and closed <= set(half[:150])
    # The service still answers everyone else.
    assert service.get("/healthz").status_code == 200
    for sock in half:
        sock.close()


def test_metrics_and_readyz_answer_only_on_the_metrics_port(start_service, rotor):
    service = start_service(metrics_port=free_port())  # ready: /readyz answered on that port
    assert service.ops_url != service.url
    for path in ("/metrics", "/readyz"):
        assert service.get(path).status_code == 404, path  # not on the public port
    assert service.get("/readyz", ops=True).json() == {"ready": True}
    assert service.get("/healthz").status_code == 200  # liveness on both
    assert service.get("/healthz", ops=True).status_code == 200
    # The public port takes webhooks as before; the metrics port takes nothing else.
    body, headers = webhook(rotor)
    assert service.post("/rotor/webhook", content=body, headers=headers).status_code == 202
    with httpx.Client(trust_env=False) as client:
        elsewhere = client.post(f"{service.ops_url}/rotor/webhook", content=body, headers=headers)
        assert elsewhere.status_code == 404
        assert client.post(f"{service.ops_url}/slack/events").status_code == 404
    assert counted(service, "accepted") == 1
