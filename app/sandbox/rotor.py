"""A loopback stand-in for the Rotor approvals API, which also sends signed webhooks.

It serves the documented endpoints (Bearer auth, 401/404/409, cursor pagination), and lets a
test or the sandbox page enqueue jobs, decide approvals "from the CLI", slow Rotor down or
take it offline. For tests it counts every decision call it receives, can hold decisions
until released, accept a second decision of the same approval (so a double decision shows
instead of hiding behind a 409), and apply a decision then lose the reply.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


def sign_webhook(secret: str, body: str, when: datetime | None = None) -> dict[str, str]:
    """Standard Webhooks headers for `body`."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    when = when or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
        "content-type": "application/json",
    }


def new_approval_id() -> str:
    return f"apv_{uuid.uuid4().hex}"


class FakeRotor:
    def __init__(self, api_key: str, webhook_secret: str) -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.webhook_url = ""  # the service's /rotor/webhook, set once it runs
        self.base_url = ""  # ours, set once we run
        self.approvals: dict[str, dict[str, Any]] = {}  # in creation order
        self.decisions: list[tuple[str, str]] = []  # (approval id, status) per decision made
        self.latency = 0.0  # seconds added to every API answer
        self.down_status: int | None = None  # answer everything with this status
        self.fail_next = 0  # answer this many of the next calls with 503
        # Every approve/reject call received, as (approval id, status), whatever it answered.
        self.decision_calls: list[tuple[str, str]] = []
        self.list_calls = 0  # GET /v1/approvals calls received
        self.accept_repeats = False  # decide again instead of answering 409
        self.hold_decisions = False  # decision calls wait while this is set
        # Decide, then lose the reply: "503" answers 503, "drop" cuts the connection, a number
        # answers that many seconds late (past the client's timeout). One entry per call.
        self.lose_replies: list[str | float] = []
        self._lock = threading.RLock()
        # One client for every delivery: building one costs milliseconds (its TLS context).
        self._http = httpx.Client(trust_env=False, timeout=10)
        base = "/v1/approvals"
        self.app = Starlette(
            routes=[
                Route(base, self._list),
                Route(base + "/{id}", self._get),
                Route(base + "/{id}/approve", self._approve, methods=["POST"]),
                Route(base + "/{id}/reject", self._reject, methods=["POST"]),
            ]
        )

    # --- what tests and the sandbox page do -------------------------------------------------

    def create(self, queue: str, payload: Any, job_id: str | None = None) -> dict[str, Any]:
        approval = {
            "id": new_approval_id(),
            "jobId": job_id or f"job_{secrets.token_hex(6)}",
            "queueName": queue,
            "payload": payload,
            "status": PENDING,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "workspaceId": "ws_sandbox",
        }
        with self._lock:
            self.approvals[approval["id"]] = approval
        return approval

    def event_body(self, approval_id: str) -> str:
        a = self.approvals[approval_id]
        data = {
            "approvalId": a["id"],
            "jobId": a["jobId"],
            "queueName": a["queueName"],
            "payload": a["payload"],
            "workspaceId": a["workspaceId"],
        }
        return json.dumps({"event": "approval.pending", "data": data})

    def deliver(self, approval_id: str, url: str | None = None) -> httpx.Response:
        """Send (or send again) the approval's signed `approval.pending` webhook."""
        return self.send_webhook(self.event_body(approval_id), url=url)

    def send_webhook(
        self, body: str, headers: dict[str, str] | None = None, url: str | None = None
    ) -> httpx.Response:
        headers = headers or sign_webhook(self.webhook_secret, body)
        return self._http.post(url or self.webhook_url, content=body, headers=headers)

    def enqueue(self, queue: str, payload: Any, job_id: str | None = None) -> dict[str, Any]:
        """A job lands on an approval queue: Rotor records the approval and sends the webhook."""
        approval = self.create(queue, payload, job_id)
        self.deliver(approval["id"])
        return approval

    def decide_outside(self, approval_id: str, status: str, reason: str | None = None) -> None:
        """A decision made with Rotor's CLI or REST API, not in Slack."""
        with self._lock:
            self._decide(approval_id, status, reason)

    def newest_first(self) -> list[dict[str, Any]]:
        """Copies of every approval, newest first."""
        with self._lock:
            return [dict(a) for a in reversed(self.approvals.values())]

    def status(self, approval_id: str) -> str:
        with self._lock:
            return self.approvals[approval_id]["status"]

    # --- the API ----------------------------------------------------------------------------

    async def _guard(self, request: Request) -> Response | None:
        if self.latency:
            await asyncio.sleep(self.latency)
        with self._lock:
            failing = self.fail_next > 0
            self.fail_next -= failing
        if self.down_status or failing:
            return JSONResponse({"error": "unavailable"}, self.down_status or 503)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "invalid API key"}, 401)
        return None

    async def _list(self, request: Request) -> Response:
        with self._lock:
            self.list_calls += 1
        if refused := await self._guard(request):
            return refused
        q = request.query_params
        status, queue = q.get("status"), q.get("queue")
        if status is not None and status not in (PENDING, APPROVED, REJECTED):
            return JSONResponse({"error": "status must be pending, approved or rejected"}, 400)
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            return JSONResponse({"error": "limit must be a number"}, 400)
        if not 1 <= limit <= 100:
            return JSONResponse({"error": "limit must be 1 to 100"}, 400)
        with self._lock:
            newest_first = [
                a
                for a in reversed(self.approvals.values())
                if (status is None or a["status"] == status)
                and (queue is None or a["queueName"] == queue)
            ]
        start = 0
        if cursor := q.get("cursor"):
            ids = [a["id"] for a in newest_first]
            if cursor not in ids:
                return JSONResponse({"error": "unknown cursor"}, 400)
            start = ids.index(cursor) + 1
        page = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        return JSONResponse({"approvals": page, "nextCursor": page[-1]["id"] if more else None})

    async def _get(self, request: Request) -> Response:
        if refused := await self._guard(request):
            return refused
        with self._lock:
            approval = self.approvals.get(request.path_params["id"])
        if approval is None:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(approval)

    async def _approve(self, request: Request) -> Response:
        return await self._decision(request, APPROVED, None)

    async def _reject(self, request: Request) -> Response:
        try:
            reason = (json.loads(await request.body() or b"{}")).get("reason")
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, 400)
        if not isinstance(reason, str) or not reason.strip():
            return JSONResponse({"error": "a reason is required"}, 400)
        return await self._decision(request, REJECTED, reason)

    async def _decision(self, request: Request, status: str, reason: str | None) -> Response:
        approval_id = request.path_params["id"]
        with self._lock:
            self.decision_calls.append((approval_id, status))
        while self.hold_decisions:  # noqa: ASYNC110 (set from the test's thread)
            await asyncio.sleep(0.01)
        if refused := await self._guard(request):
            return refused
        with self._lock:
            approval = self.approvals.get(approval_id)
            if approval is None:
                return JSONResponse({"error": "not found"}, 404)
            if approval["status"] != PENDING and not self.accept_repeats:
                return JSONResponse({"error": f"approval is {approval['status']}"}, 409)
            self._decide(approval_id, status, reason)
            answer = dict(approval)
            lose = self.lose_replies.pop(0) if self.lose_replies else None
        if lose == "503":
            return JSONResponse({"error": "unavailable"}, 503)
        if lose == "drop":
            return _DroppedConnection()
        if lose is not None:
            await asyncio.sleep(float(lose))
        return JSONResponse(answer)

    def _decide(self, approval_id: str, status: str, reason: str | None) -> None:
        approval = self.approvals[approval_id]
        approval["status"] = status
        approval["decidedAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if reason is not None:
            approval["reason"] = reason
        self.decisions.append((approval_id, status))


class _DroppedConnection(Response):
    """Headers promising a body that never comes: the server closes the connection mid-reply."""

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id":', "more_body": True})
        raise ConnectionAbortedError("reply lost on purpose")
