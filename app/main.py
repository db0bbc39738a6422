"""The ASGI application: routes, and a lifespan that starts and stops the workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app import metrics
from app.asgi import BODY_SECONDS, BUFFER_BYTES, Budget, RequestGuard
from app.config import Policy, Settings
from app.db import Store
from app.db.budget import RotorBudget
from app.db.engine import STATEMENT_TIMEOUT_MS
from app.db.models import utcnow
from app.decisions import Decider
from app.edits import Editor
from app.errors import DatabaseUnavailable
from app.intake import Intake, OutsideDecisions
from app.interactions.app import build_bolt_app
from app.interactions.listeners import Services
from app.interactions.socket_mode import SocketMode
from app.rotor import RotorClient
from app.slack.approvers import ApproverCheck
from app.slack.client import SlackClient
from app.slack.home import HomeTabs
from app.slack.requesters import Requesters
from app.webhooks import MAX_BODY, webhook_endpoint
from app.workers.deliver import Delivery
from app.workers.home import HomeRefresh
from app.workers.outbox import Outbox
from app.workers.poll import Poll
from app.workers.reminders import Reminders
from app.workers.sync import Sync

log = logging.getLogger(__name__)

STOP_SECONDS = 4.0
READY_SECONDS = 3  # /readyz answers within this, database or not


def create_app(settings: Settings, policy: Policy) -> Starlette:
    settings.require_serving(polled=policy.sync.poll is not None)
    metrics.name_queues(q.name for q in policy.queues)
    # Statements bounded (PostgreSQL): one waiting on a lock fails after 10 s (/readyz names
    # the worker) and a paused replica holding it is ended. The command-line tools are not.
    store = Store(settings.database_url, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    # Every call to Rotor, by any replica, draws on the workspace's rate limit.
    budget = RotorBudget(store, policy.rotor.requests_per_minute)
    rotor = RotorClient(
        str(settings.rotor_api_url), settings.secret("rotor_api_key"), budget=budget
    )
    # No client-level retries: the outbox alone retries, so nothing is posted twice.
    web = AsyncWebClient(
        token=settings.secret("slack_bot_token"),
        base_url=str(settings.slack_api_url),
        # Typed int, handed to aiohttp as is: a fraction of a second works.
        timeout=cast(int, policy.slack.timeout.total_seconds()),
        retry_handlers=[],
    )
    slack = SlackClient(web)
    requesters = Requesters(slack)
    approvers = ApproverCheck(slack)
    home = HomeTabs(store, slack, policy, approvers)
    home_refresh = HomeRefresh(home)
    editor = Editor(store, rotor)
    delivery = Delivery(slack, policy, store, requesters, editor)
    outbox = Outbox(store, delivery, policy, shown=home_refresh.wake)
    editor.wake_outbox = outbox.wake
    intake = Intake(store, policy, outbox.wake)
    # Clicks come first; what no person waits on gives way to them.
    background = rotor.background()
    outside = OutsideDecisions(store, background, intake, outbox.wake)
    decider = Decider(store, rotor, policy, approvers, requesters, intake, outbox.wake)
    reminders = Reminders(store, policy, outbox.wake, decider.expire)
    sync = Sync(store, background, intake, outside, policy, outbox.wake)
    services = Services(
        decider=decider,
        rotor=rotor,
        approvals=store.approvals,
        home=home,
        slack=slack,
        editor=editor,
    )
    signing_secret = settings.slack_signing_secret
    bolt = build_bolt_app(
        web,
        signing_secret.get_secret_value() if signing_secret else "",  # none over Socket Mode
        services,
        str(settings.slack_api_url),
    )
    slack_handler = AsyncSlackRequestHandler(bolt)
    # Slack over HTTP (the Request URL) or over a socket we open: chosen here, at the edge only.
    app_token = settings.slack_app_token
    socket = SocketMode(bolt, app_token.get_secret_value()) if app_token else None
    workers = {"outbox": outbox, "reminders": reminders, "sync": sync, "home": home_refresh}
    if policy.sync.poll is not None:
        workers["poll"] = Poll(store, background, intake, policy)
    running: dict[str, asyncio.Task] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        for name, worker in workers.items():
            running[name] = asyncio.create_task(worker.run(), name=name)
        if socket is not None:
            socket.start()
        log.info("rotor-slack started")
        try:
            yield
        finally:
            # Shutdown: decisions under way finish (Rotor may have decided already), then
            # the outbox finishes its calls in flight; what is left waits in the database.
            if socket is not None:
                await socket.stop()  # no new clicks, as uvicorn takes no new requests
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_SECONDS):
                    await decider.in_flight.wait_idle()
            await outbox.stop()
            await outside.close()
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
            if worker.stuck():
                problems.append(f"{name} stuck")
            if worker.database_down:  # its statements fail (a lock held on a table, say)
                problems.append(f"{name}: database unavailable")
        if socket is not None and not await socket.connected():
            problems.append("slack: Socket Mode not connected (yet)")
        # Not wait_for: it also waits for the cancelled ping, which a locked SQLite file holds
        # for its busy timeout, past any probe's patience.
        ping = asyncio.ensure_future(store.ping())
        done, _ = await asyncio.wait({ping}, timeout=READY_SECONDS)
        if not done:
            ping.cancel()
            problems.append(f"database: no answer in {READY_SECONDS} s")
        elif isinstance(ping.exception(), DatabaseUnavailable):
            problems.append(f"database: {ping.exception()}")
        elif ping.exception() is not None:
            problems.append(f"database: {type(ping.exception()).__name__}")
        # Approvals Rotor lists that cannot be read: detail for the operator, not a problem
        # (the service serves everything else).
        detail = {"unreadable": u} if (u := rotor.unreadable.detail()) else {}
        if problems:
            return JSONResponse({"ready": False, "problems": problems} | detail, status_code=503)
        return JSONResponse({"ready": True} | detail)

    async def metrics_endpoint(_request: Request) -> Response:
        with contextlib.suppress(Exception):
            waiting, failed, oldest = await store.outbox.stats()
            metrics.OUTBOX_DEPTH.set(waiting)
            metrics.OUTBOX_FAILED.set(failed)
            metrics.OUTBOX_OLDEST.set((utcnow() - oldest).total_seconds() if oldest else 0)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    if socket is None:
        routes.append(Route("/slack/events", slack_events, methods=["POST"]))
    if settings.rotor_webhook_secret is not None:  # else approvals are polled
        secret = settings.rotor_webhook_secret.get_secret_value()
        routes.append(
            Route(
                "/rotor/webhook",
                webhook_endpoint(secret, intake.accept, outside.signal),
                methods=["POST"],
            )
        )
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(
        RequestGuard, limit=MAX_BODY, budget=Budget(BUFFER_BYTES), seconds=BODY_SECONDS
    )
    return app
