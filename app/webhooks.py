"""`POST /rotor/webhook`: verify and parse Rotor's events, and hand each to what handles it.

`approval.pending` is recorded (and so posted); `approval.approved` / `approval.rejected` are a
signal to read the approval from Rotor (their other fields are undocumented); `webhook.test`
gets a log line; any other event is answered 200 and ignored. Every verified event is answered
2xx except a malformed `approval.pending`, so Rotor never retries one forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from app import metrics, signing, storable
from app.db.approvals import NewApproval
from app.db.models import utcnow
from app.errors import DatabaseRefused, DatabaseUnavailable
from app.rotor import APPROVAL_ID_PATTERN
from app.storable import MAX_DEPTH, Text, depth  # noqa: F401 (the limit, re-exported)

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
RETRY_AFTER_SECONDS = 30


class PendingEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    approval_id: str = Field(alias="approvalId", pattern=APPROVAL_ID_PATTERN)
    job_id: Text = Field(alias="jobId", min_length=1, max_length=500)
    queue_name: Text = Field(alias="queueName", min_length=1, max_length=500)
    payload: Any
    workspace_id: Text | None = Field(default=None, alias="workspaceId")


class DecisionEvent(BaseModel):
    """`approval.approved` / `approval.rejected`: only the id is documented, so only it is read."""

    model_config = ConfigDict(extra="ignore")

    approval_id: str = Field(alias="approvalId", pattern=APPROVAL_ID_PATTERN)


PENDING, DECIDED, TEST = (
    "approval.pending",
    ("approval.approved", "approval.rejected"),
    "webhook.test",
)


class WebhookError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def verify(keys: list[bytes], body: bytes, headers: dict[str, str]) -> None:
    try:
        signing.verify(keys, headers, body, time.time())
    except signing.SignatureError as e:
        raise WebhookError(401, f"signature check failed: {e}") from None


def parse(body: bytes) -> PendingEvent | DecisionEvent | str | None:
    """A pending or decision event's data, the name of a test event, or None for event types
    this service does not handle."""
    try:
        document = storable.loads(body)
    except storable.TooDeep as e:
        raise WebhookError(422, f"body: {e}") from None
    except storable.NotJSON:
        raise WebhookError(400, "body is not JSON") from None
    # What the service cannot hold (too deep, 1e400, a 5,000-digit integer) is refused whole:
    # the event carries one approval, and a marker must not be stored in its place.
    if why := storable.unreadable_in(document):
        raise WebhookError(422, f"body: {why}")
    if not isinstance(document, dict) or not isinstance(document.get("event"), str):
        raise WebhookError(400, 'body must be an object with an "event" string')
    kind = document["event"]
    if kind == TEST:
        return TEST
    if kind in DECIDED:
        try:
            return DecisionEvent.model_validate(document.get("data"))
        except ValidationError:
            # Verified, yet not usable: answered 2xx (a retry would not mend it); the sync
            # still finds the decision.
            log.warning("webhook: %s without a valid approvalId: ignored", kind)
            return None
    if kind != PENDING:
        return None
    try:
        return PendingEvent.model_validate(document.get("data"))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in ("data", *first["loc"]))
        raise WebhookError(422, f"{where}: {first['msg']}") from None


def as_approval(event: PendingEvent) -> NewApproval:
    return NewApproval(
        id=event.approval_id,
        job_id=event.job_id,
        queue_name=event.queue_name,
        payload=event.payload,
        workspace_id=event.workspace_id,
        created_at=utcnow(),
    )


def webhook_endpoint(
    secret: str,
    intake: Callable[[NewApproval], Awaitable[bool]],
    decided: Callable[[str], None],
):
    """The route handler. `intake` records an approval and says whether it was new; `decided`
    starts reading a decided approval from Rotor (it returns at once)."""
    keys = signing.secret_keys(secret)

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.body()  # RequestGuard has capped its size and time
        try:
            verify(keys, body, dict(request.headers))
            event = parse(body)
        except WebhookError as e:
            metrics.WEBHOOKS.labels(outcome=f"rejected_{e.status}").inc()
            log.warning("webhook refused: %s", e.message)
            return JSONResponse({"error": e.message}, status_code=e.status)
        if event == TEST:
            metrics.WEBHOOKS.labels(outcome="test").inc()
            log.info("webhook.test: a verified test event arrived: the webhook secret is right")
            return JSONResponse({"status": "ok"}, status_code=200)
        if isinstance(event, DecisionEvent):
            metrics.WEBHOOKS.labels(outcome="decision").inc()
            decided(event.approval_id)
            return JSONResponse({"status": "accepted"}, status_code=202)
        if not isinstance(event, PendingEvent):
            metrics.WEBHOOKS.labels(outcome="ignored").inc()
            return JSONResponse({"status": "ignored"}, status_code=200)
        try:
            new = await intake(as_approval(event))
        except DatabaseRefused as e:
            # A value the checks above let through and the database still refuses: a 4xx, so
            # a redelivery (which would fail the same way) is not asked for.
            metrics.WEBHOOKS.labels(outcome="rejected_422").inc()
            log.warning("webhook refused: %s", e, extra={"approval_id": event.approval_id})
            return JSONResponse({"error": f"data: {e}"}, status_code=422)
        except DatabaseUnavailable as e:
            # Rotor redelivers: nothing is lost, and the answer says when to try again.
            metrics.WEBHOOKS.labels(outcome="unavailable_503").inc()
            log.warning("webhook deferred: database unavailable: %s", e)
            return JSONResponse(
                {"error": "database unavailable, try again"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if new:
            metrics.WEBHOOKS.labels(outcome="accepted").inc()
            log.info("approval accepted", extra={"approval_id": event.approval_id})
            return JSONResponse({"status": "accepted"}, status_code=202)
        metrics.WEBHOOKS.labels(outcome="duplicate").inc()
        return JSONResponse({"status": "duplicate"}, status_code=200)

    async def counted(request: Request) -> JSONResponse:
        # Unexpected failures are answered and counted too (Rotor redelivers on a 5xx).
        try:
            return await endpoint(request)
        except Exception:
            metrics.WEBHOOKS.labels(outcome="error").inc()
            log.exception("webhook failed")
            return JSONResponse({"error": "internal error"}, status_code=500)

    return counted
