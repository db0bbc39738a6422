"""The ASGI application: routes, and a lifespan that starts and stops the workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app import metrics
from app.config import Policy, Settings
from app.decisions import Decider
from app.intake import Intake
from app.rotor import RotorClient
from app.slack.approvers import ApproverCheck
from app.slack.listeners import build_bolt_app
from app.store import Store, utcnow
from app.webhooks import MAX_BODY, webhook_endpoint
from app.workers.outbox import Outbox
from app.workers.reminders import Reminders
from app.workers.sync import Sync

log = logging.getLogger(__name__)

STOP_SECONDS = 4.0


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, reading no more than that of them."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        response = JSONResponse({"error": f"body over {self.limit} bytes"}, status_code=413)
        await response({"type": "http"}, None, send)


def create_app(settings: Settings, policy: Policy) -> Starlette:
    settings.require_serving()
    store = Store(settings.database_url)
    rotor = RotorClient(str(settings.rotor_api_url), settings.rotor_api_key.get_secret_value())
    # No client-level retries: the outbox alone retries, so nothing is posted twice.
    slack = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=str(settings.slack_api_url),
        timeout=policy.slack.timeout.total_seconds(),
        retry_handlers=[],
    )
    outbox = Outbox(store, slack, policy)
    intake = Intake(store, policy, outbox.wake)
    decider = Decider(store, rotor, policy, ApproverCheck(slack), intake, outbox.wake)
    reminders = Reminders(store, policy, outbox.wake)
    sync = Sync(store, rotor, intake, policy, outbox.wake)
    bolt = build_bolt_app(slack, settings.slack_signing_secret.get_secret_value(), decider, rotor)
    slack_handler = AsyncSlackRequestHandler(bolt)
    workers = {"outbox": outbox, "reminders": reminders, "sync": sync}
    running: dict[str, asyncio.Task] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        for name, worker in workers.items():
            running[name] = asyncio.create_task(worker.run(), name=name)
        log.info("rotor-slack started")
        try:
            yield
        finally:
            # Shutdown: decisions under way finish (Rotor may have decided already), then
            # the outbox finishes its calls in flight; what is left waits in the database.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_SECONDS):
                    await decider.in_flight.wait_idle()
            await outbox.stop()
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            await rotor.close()
            await store.close()
            log.info("rotor-slack stopped")

    async def slack_events(request: Request) -> Response:
        return await slack_handler.handle(request)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_request: Request) -> Response:
        problems = [name for name, task in running.items() if task.done()]
        for name, worker in workers.items():
            # A worker that has not come round its loop for several periods is stuck.
            if time.monotonic() - worker.heartbeat > 3 * worker.period + 30:
                problems.append(f"{name} stuck")
        # Not wait_for: it also waits for the cancelled ping, which a locked SQLite file holds
        # for its busy timeout (30 s), far past any probe's patience.
        ping = asyncio.ensure_future(store.ping())
        done, _ = await asyncio.wait({ping}, timeout=5)
        if not done:
            ping.cancel()
            problems.append("database: TimeoutError")
        elif ping.exception() is not None:
            problems.append(f"database: {type(ping.exception()).__name__}")
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics_endpoint(_request: Request) -> Response:
        with contextlib.suppress(Exception):
            waiting, failed, oldest = await store.outbox_stats()
            metrics.OUTBOX_DEPTH.set(waiting)
            metrics.OUTBOX_FAILED.set(failed)
            metrics.OUTBOX_OLDEST.set((utcnow() - oldest).total_seconds() if oldest else 0)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route(
                "/rotor/webhook",
                webhook_endpoint(settings.rotor_webhook_secret.get_secret_value(), intake.accept),
                methods=["POST"],
            ),
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    return app
