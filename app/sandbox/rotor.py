"""A loopback stand-in for the Rotor approvals API, which also sends signed webhooks.

It serves the documented endpoints (Bearer auth, 401/404/409, cursor pagination, errors in
Rotor's shape, the workspace rate limit with 429 and Retry-After over a sliding minute), signs
webhooks with Rotor's header names, and lets a test or the sandbox page enqueue jobs, decide
approvals "from the CLI" (which sends the decision event, as Rotor does), send `webhook.test`,
slow Rotor down or take it offline. For tests it counts every decision call it receives, can
hold decisions until released, accept a second decision of the same approval (so a double
decision shows instead of hiding behind a 409), and apply a decision then lose the reply.
A payload given as `RawJSON` is served as its text: hostile JSON Python's json will not write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import signing

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
EVENT_TYPES = {"approval.pending", "approval.approved", "approval.rejected", "webhook.test"}
WINDOW = 60.0  # Rotor's rate limit counts requests per minute
MAX_TAGS, MAX_TAG_CHARS = 10, 64  # the job tags guide: at most 10 tags of 64 characters
MAX_KEPT = 100_000  # request times kept (for tests and the page)


def sign_webhook(
    secret: str,
    body: str | bytes,
    when: datetime | None = None,
    names: tuple[str, str, str] = signing.ROTOR,
) -> dict[str, str]:
    """Signed headers for `body`, under Rotor's names (or `signing.STANDARD`), with the first
    secret of `secret` (a rotation signs with the newest)."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    stamp = int((when or datetime.now(UTC)).timestamp())
    raw = body.encode() if isinstance(body, str) else body
    signature = signing.signature(signing.secret_keys(secret)[0], msg_id, stamp, raw)
    id_name, stamp_name, signature_name = names
    return {
        id_name: msg_id,
        stamp_name: str(stamp),
        signature_name: signature,
        "content-type": "application/json",
    }


def error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """An error in Rotor's documented shape."""
    body = {"error": {"code": code, "message": message, "details": {}}}
    return JSONResponse(body, status, headers=headers or None)


def new_approval_id() -> str:
    return f"apv_{uuid.uuid4().hex}"


class RawJSON:
    """A payload given as JSON text and served as it is: what Python's json will not write (a
    1,000-level nesting, a 5,000-digit integer, `1e400`), as another Rotor client could send."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(value: Any) -> str:
    """JSON as Rotor writes it, with each RawJSON written as its text."""
    raws: dict[str, str] = {}

    def raw(o: Any) -> str:
        if not isinstance(o, RawJSON):
            raise TypeError(f"{type(o).__name__} is not JSON")
        key = f"raw-{uuid.uuid4().hex}"
        raws[json.dumps(key)] = o.text
        return key

    text = json.dumps(value, default=raw, ensure_ascii=False, allow_nan=False)
    for key, payload in raws.items():
        text = text.replace(key, payload, 1)
    return text


def json_response(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status, media_type="application/json")


class FakeRotor:
    def __init__(self, api_key: str, webhook_secret: str) -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.webhook_url = ""  # the service's /rotor/webhook, set once it runs
        self.base_url = ""  # ours, set once we run
        self.approvals: dict[str, dict[str, Any]] = {}  # in creation order
        self.jobs: dict[str, dict[str, Any]] = {}  # enqueued through the API, by job id
        self.enqueue_calls = 0  # POST /v1/queues/{name}/jobs calls received
        self.decisions: list[tuple[str, str]] = []  # (approval id, status) per decision made
        self.latency = 0.0  # seconds added to every API answer
        self.down_status: int | None = None  # answer everything with this status
        self.fail_next = 0  # answer this many of the next calls with 503
        # Every approve/reject call received, as (approval id, status), whatever it answered.
        self.decision_calls: list[tuple[str, str]] = []
        self.list_calls = 0  # GET /v1/approvals calls received
        self.lists_answered = 0  # and answered with a page
        self.get_calls = 0  # GET /v1/approvals/{id} calls received
        # The workspace's rate limit (None: none), and the time of every API request received.
        self.requests_per_minute: int | None = None
        self.request_times: list[float] = []
        self.rate_limited = 0  # requests answered 429
        self.event_types = set(EVENT_TYPES)  # what the webhook endpoint is subscribed to
        self.accept_repeats = False  # decide again instead of answering 409
        # Answer decisions with this error (status, code, message), as a quota would.
        self.refuse_decisions: tuple[int, str, str] | None = None
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
                Route("/v1/queues/{queue}/jobs", self._enqueue, methods=["POST"]),
                Route("/v1/queues/{queue}/jobs", self._jobs),
                Route("/v1/queues/{queue}/jobs/{id}", self._job),
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

    def event_body(self, approval_id: str, event: str = "approval.pending") -> str:
        a = self.approvals[approval_id]
        data = {
            "approvalId": a["id"],
            "jobId": a["jobId"],
            "queueName": a["queueName"],
            "workspaceId": a["workspaceId"],
        }
        if event == "approval.pending":
            data["payload"] = a["payload"]
        else:  # the decision's fields beyond approvalId are undocumented: the service reads them
            data |= {"status": a["status"], "reason": a.get("reason")}
        return dumps({"event": event, "data": data})

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
        """A decision made with Rotor's CLI or REST API, not in Slack: Rotor sends its event to
        an endpoint subscribed to it."""
        with self._lock:
            self._decide(approval_id, status, reason)
        event = f"approval.{status}"
        if self.webhook_url and event in self.event_types:
            self.send_webhook(self.event_body(approval_id, event))

    def send_test(self) -> httpx.Response:
        """What `rotor.webhooks.test()` sends to check an endpoint."""
        data = {"workspaceId": "ws_sandbox", "sentAt": datetime.now(UTC).isoformat()}
        return self.send_webhook(json.dumps({"event": "webhook.test", "data": data}))

    def newest_first(self) -> list[dict[str, Any]]:
        """Copies of every approval, newest first."""
        with self._lock:
            return [dict(a) for a in reversed(self.approvals.values())]

    def requests_last_minute(self) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self.request_times[-10_000:] if t > now - WINDOW)

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
            return error(self.down_status or 503, "UNAVAILABLE", "Rotor is unavailable")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "UNAUTHORIZED", "invalid API key")
        return self._count()

    def _count(self) -> Response | None:
        """Count the request against the workspace's rate limit (any sliding minute)."""
        now, limit = time.monotonic(), self.requests_per_minute
        with self._lock:
            if limit is not None:
                recent = [t for t in self.request_times[-limit:] if t > now - WINDOW]
                if len(recent) >= limit:
                    self.rate_limited += 1
                    retry_after = max(1, math.ceil(recent[0] + WINDOW - now))
                    message = f"over {limit} requests a minute"
                    return error(429, "RATE_LIMITED", message, **{"Retry-After": str(retry_after)})
            self.request_times.append(now)
            del self.request_times[:-MAX_KEPT]
        return None

    async def _list(self, request: Request) -> Response:
        with self._lock:
            self.list_calls += 1
        if refused := await self._guard(request):
            return refused
        q = request.query_params
        status, queue = q.get("status"), q.get("queue")
        if status is not None and status not in (PENDING, APPROVED, REJECTED):
            return error(400, "INVALID_REQUEST", "status must be pending, approved or rejected")
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            return error(400, "INVALID_REQUEST", "limit must be a number")
        if not 1 <= limit <= 100:
            return error(400, "INVALID_REQUEST", "limit must be 1 to 100")
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
                return error(400, "INVALID_REQUEST", "unknown cursor")
            start = ids.index(cursor) + 1
        page = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        with self._lock:
            self.lists_answered += 1
        return json_response({"approvals": page, "nextCursor": page[-1]["id"] if more else None})

    async def _get(self, request: Request) -> Response:
        with self._lock:
            self.get_calls += 1
        if refused := await self._guard(request):
            return refused
        with self._lock:
            approval = self.approvals.get(request.path_params["id"])
        if approval is None:
            return error(404, "NOT_FOUND", "no such approval")
        return json_response(approval)

    async def _enqueue(self, request: Request) -> Response:
        """Enqueue a job: on an approval queue it waits for its own approval, whose webhook is
        sent once the answer is (every queue of the stand-in needs approval). A `jobId` known
        already is ignored, as Rotor's idempotency key: the job it names is answered."""
        with self._lock:
            self.enqueue_calls += 1
        if refused := await self._guard(request):
            return refused
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return error(400, "INVALID_REQUEST", "body must be JSON")
        if not isinstance(body, dict) or "payload" not in body:
            return error(400, "INVALID_REQUEST", "body must be an object with a payload")
        tags, job_id = body.get("tags", []), body.get("jobId")
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            return error(400, "INVALID_REQUEST", f"tags: a list of at most {MAX_TAGS}")
        if not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_CHARS for t in tags):
            return error(400, "INVALID_REQUEST", f"tags: each at most {MAX_TAG_CHARS} characters")
        if job_id is not None and not (isinstance(job_id, str) and 0 < len(job_id) <= 255):
            return error(400, "INVALID_REQUEST", "jobId: a string of at most 255 characters")
        queue = request.path_params["queue"]
        with self._lock:
            if job_id in self.jobs:
                return json_response(self._job_view(self.jobs[job_id]))
            approval = self.create(queue, body["payload"], job_id)
            job = {"id": approval["jobId"], "queueName": queue, "tags": tags}
            job |= {"payload": body["payload"], "approvalId": approval["id"]}
            self.jobs[job["id"]] = job
        threading.Thread(target=self._announce, args=(approval["id"],), daemon=True).start()
        return json_response(self._job_view(job), status=201)

    def _announce(self, approval_id: str) -> None:
        if self.webhook_url:
            with contextlib.suppress(httpx.HTTPError):
                self.deliver(approval_id)

    def _job_view(self, job: dict[str, Any]) -> dict[str, Any]:
        approval = self.approvals[job["approvalId"]]
        state = {PENDING: "pending_approval", APPROVED: "waiting", REJECTED: "failed"}
        return {**job, "state": state[approval["status"]]}

    async def _job(self, request: Request) -> Response:
        if refused := await self._guard(request):
            return refused
        with self._lock:
            job = self.jobs.get(request.path_params["id"])
            if job is None or job["queueName"] != request.path_params["queue"]:
                return error(404, "NOT_FOUND", "no such job")
            return json_response(self._job_view(job))

    async def _jobs(self, request: Request) -> Response:
        """`?tag=` and `?state=` filter, as the docs' job tags guide says."""
        if refused := await self._guard(request):
            return refused
        tag, state = request.query_params.get("tag"), request.query_params.get("state")
        queue = request.path_params["queue"]
        with self._lock:
            jobs = [self._job_view(j) for j in self.jobs.values() if j["queueName"] == queue]
        jobs = [
            j for j in jobs if (tag is None or tag in j["tags"]) and state in (None, j["state"])
        ]
        return json_response({"jobs": jobs})

    async def _approve(self, request: Request) -> Response:
        return await self._decision(request, APPROVED, None)

    async def _reject(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error(400, "INVALID_REQUEST", "body must be JSON")
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            return error(400, "INVALID_REQUEST", "a reason is required")
        return await self._decision(request, REJECTED, reason)

    async def _decision(self, request: Request, status: str, reason: str | None) -> Response:
        approval_id = request.path_params["id"]
        with self._lock:
            self.decision_calls.append((approval_id, status))
        while self.hold_decisions:  # noqa: ASYNC110 (set from the test's thread)
            await asyncio.sleep(0.01)
        if refused := await self._guard(request):
            return refused
        if self.refuse_decisions is not None:
            return error(*self.refuse_decisions)
        with self._lock:
            approval = self.approvals.get(approval_id)
            if approval is None:
                return error(404, "NOT_FOUND", "no such approval")
            if approval["status"] != PENDING and not self.accept_repeats:
                return error(409, "CONFLICT", f"approval is {approval['status']}")
            self._decide(approval_id, status, reason)
            answer = dict(approval)
            lose = self.lose_replies.pop(0) if self.lose_replies else None
        if lose == "503":
            return error(503, "UNAVAILABLE", "Rotor is unavailable")
        if lose == "drop":
            return _DroppedConnection()
        if lose is not None:
            await asyncio.sleep(float(lose))
        return json_response(answer)

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
