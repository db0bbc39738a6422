"""ASGI guards in front of the signed routes: cheap checks before a body is read, and bounds on
reading it (size, time, and the bytes buffered at once across all requests); and the split of
the operational endpoints onto a port of their own."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics, signing

log = logging.getLogger(__name__)

WEBHOOK_PATH, SLACK_PATH = "/rotor/webhook", "/slack/events"
SIGNED = (WEBHOOK_PATH, SLACK_PATH)
OPS_PATHS = ("/metrics", "/readyz")  # with --metrics-port: only there
LIVENESS_PATH = "/healthz"  # on every port
SLACK_STAMP, SLACK_SIGNATURE = "x-slack-request-timestamp", "x-slack-signature"
WINDOW_SECONDS = signing.WINDOW_SECONDS  # Slack refuses signatures older than this too
# A body up to this size costs no budget: uvicorn reads that far ahead on every connection
# anyway, and its `limit_concurrency` bounds how many there are.
FREE_BYTES = 64 * 1024
BUFFER_BYTES = 32 * 1024 * 1024  # bodies over FREE_BYTES held at once, all requests together
BODY_SECONDS = 10.0  # a body must arrive within this (1 MiB at 100 kB/s)
RETRY_AFTER = 10  # seconds: by then the bodies holding the budget have arrived or timed out


class Budget:
    """Bytes that request bodies may hold in memory at once, across the whole process."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0

    def take(self, size: int) -> bool:
        if self.used + size > self.total:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


def signature_problem(headers: Headers, path: str, now: float) -> str | None:
    """Why the request cannot carry a valid signature, judged from its headers alone."""
    if path == WEBHOOK_PATH:  # either header family (app.signing)
        try:
            signing.check_timestamp(signing.signed_headers(headers), now)
        except signing.SignatureError as e:
            return str(e)
        return None
    missing = [name for name in (SLACK_STAMP, SLACK_SIGNATURE) if not headers.get(name)]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        age = now - int(headers[SLACK_STAMP])
    except ValueError:
        return f"{SLACK_STAMP} is not a Unix time"
    if abs(age) > WINDOW_SECONDS:
        return f"{SLACK_STAMP} is outside the 5-minute window"
    return None


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Disconnected(Exception):
    """The client went away mid-body: there is nobody to answer."""


class RequestGuard:
    """For the signed routes: refuse without reading when the signature headers are missing or
    stale (401), the declared body is too big (413) or the budget is spent (503); then read the
    body within `seconds` (else 408) and hand it on whole. Other routes read no body."""

    def __init__(self, app: ASGIApp, limit: int, budget: Budget, seconds: float) -> None:
        self.app, self.limit, self.budget, self.seconds = app, limit, budget, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in SIGNED:
            return await self.app(scope, receive, send)
        held = 0
        try:
            headers = Headers(scope=scope)
            problem = signature_problem(headers, scope["path"], time.time())
            if problem:
                raise Refused(401, f"signature check failed: {problem}")
            declared = headers.get("content-length")
            size = int(declared) if declared and declared.isdigit() else None
            if size is not None and size > self.limit:
                raise Refused(413, f"body over {self.limit} bytes")
            if size is not None and size > FREE_BYTES:
                held = self._take(size)
            try:
                async with asyncio.timeout(self.seconds):
                    body, extra = await self._read(receive, chunked=size is None)
            except TimeoutError:
                raise Refused(408, f"body not received within {self.seconds:g}s") from None
            held += extra
            await self.app(scope, _replay(body, receive), send)
        except Refused as e:
            await self._refuse(scope, send, e)
        except Disconnected:
            pass  # the client went away: nobody to answer, nothing worth a log line
        finally:
            self.budget.give(held)

    def _take(self, size: int) -> int:
        if not self.budget.take(size):
            retry = {"retry-after": str(RETRY_AFTER)}
            raise Refused(503, "too many bodies arriving at once; retry later", retry)
        return size

    async def _read(self, receive: Receive, chunked: bool) -> tuple[bytes, int]:
        """The whole body, and the budget taken for it on the way (only without Content-Length)."""
        chunks: list[bytes] = []
        size = taken = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    raise Refused(413, f"body over {self.limit} bytes")
                if chunked and size > FREE_BYTES:
                    taken += self._take(len(chunk))
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks), taken
        except BaseException:
            self.budget.give(taken)
            raise

    async def _refuse(self, scope: Scope, send: Send, refused: Refused) -> None:
        if scope["path"] == WEBHOOK_PATH:
            metrics.WEBHOOKS.labels(outcome=f"rejected_{refused.status}").inc()
        # Path and status in the template: the log filter limits each kind of refusal apart.
        log.warning(f"{scope['path']} answered {refused.status}: %s", refused.message)
        # Close the connection: the rest of the body is not worth reading.
        headers = {"connection": "close"} | refused.headers
        response = JSONResponse({"error": refused.message}, refused.status, headers)
        await response(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body once, then waits on the real one (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class OpsPort:
    """With `serve --metrics-port`: /metrics and /readyz are served only on that port (the
    public one answers 404 for them), and that port serves nothing else but /healthz. A
    request's port is the listening socket it came in on (ASGI `server`), which no header of
    the request can change."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app, self.port = app, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_ops = server is not None and server[1] == self.port
            path = scope["path"]
            served = path in (*OPS_PATHS, LIVENESS_PATH) if on_ops else path not in OPS_PATHS
            if not served:
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)
