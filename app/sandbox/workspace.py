"""The sandbox's browser page: a Slack-like workspace over the Slack stand-in, and a Rotor panel.

Everything a person does on the page goes to the service exactly as Slack would send it
(signed `block_actions`, `view_submission`, slash commands), through the stand-ins' helpers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import timedelta
from importlib.resources import files

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from app import clock
from app.config import Policy
from app.sandbox.origin import SameOriginOnly
from app.sandbox.rotor import FakeRotor
from app.sandbox.slack import FakeSlack
from app.sandbox.slack_objects import Ephemeral, HomeTab, Message, dm_channel

VISITOR = "U0VISITOR"
GUEST = "U0GUEST"

EXAMPLES = {
    "AI outreach email": (
        "outreach",
        {
            "to": "jordan@example.com",
            "subject": "Quick question about your Q3 roadmap",
            "body": "Hi Jordan,\n\nI noticed your team is hiring platform engineers…",
            "model": "gpt-5-mini",
            "campaign": "q3-outbound",
        },
    ),
    "Large payment": (
        "payments",
        {
            "amount": 48_500.00,
            "currency": "EUR",
            "beneficiary": {"name": "Acme GmbH", "iban": "DE89370400440532013000"},
            "reference": "INV-2026-1187",
            "requested_by": VISITOR,
            "api_key": "sk_live_should_be_masked",
        },
    ),
    "Payment over 100k": (
        "payments",
        {
            "amount": 250_000.00,
            "currency": "EUR",
            "beneficiary": {"name": "Globex SA", "iban": "FR1420041010050500013M02606"},
            "reference": "WIRE-2026-0042",
            "requested_by": VISITOR,
        },
    ),
    "Contact-list export": (
        "exports",
        {
            "destination": "s3://exports/contacts.csv",
            "requested_by": "ana@example.com",
            "rows": [
                {"email": f"user{i}@example.com", "name": f"User {i}", "consent": i % 3 != 0}
                for i in range(120)
            ],
        },
    ),
}


def channel_name(channel_id: str) -> str:
    return channel_id.removeprefix("C0").lower()


# Group members get a name of their own, as people in a real workspace have.
MEMBER_NAMES = ["Dev", "Noor", "Sam", "Ines", "Tariq", "Yuki"]


def people(policy: Policy, slack: FakeSlack) -> list[dict]:
    """Who can act on the page, with the names Slack would show: every approver, a member of each
    approver group (made up, and put into the stand-in's group), a visitor."""
    found: dict[str, dict] = {}
    deciders = [
        (queue.name, approver)
        for queue in policy.queues
        for keys in (queue, *queue.rules)  # a rule may name approvers of its own
        for approver in keys.approvers or []
    ]
    for queue_name, approver in dict.fromkeys(deciders):
        if approver.startswith("S"):
            user = f"U0{approver[2:]}MEMBER"
            if approver not in slack.usergroups:
                slack.usergroups[approver] = [user]
            name = MEMBER_NAMES[(list(slack.usergroups).index(approver)) % len(MEMBER_NAMES)]
            role = f"in @{group_handle(approver)}, approves"
        else:
            user, name, role = approver, person_name(approver), "approves"
        entry = found.setdefault(user, {"name": name, "role": role, "queues": []})
        if queue_name not in entry["queues"]:
            entry["queues"].append(queue_name)
    users = [
        {"id": user, "name": e["name"], "role": f"{e['role']} {', '.join(e['queues'])}"}
        for user, e in found.items()
    ]
    guarded = [q.name for q in policy.queues if q.approvers is not None]
    role = f"not an approver of {', '.join(guarded)}" if guarded else "no approver"
    return [
        *users,
        {"id": VISITOR, "name": "Visitor", "role": f"{role}; in every channel"},
        # Queues without approvers belong to their channel: a guest in none may decide none.
        {"id": GUEST, "name": "Guest", "role": "in no channel: decides nothing"},
    ]


def person_name(user_id: str) -> str:
    """A readable name for a made-up id (`U0CAROL` is Carol); a real-looking id stays as it is."""
    tail = user_id[2:]
    if user_id[:2] not in ("U0", "W0") or not tail.isalpha():
        return user_id
    return tail if len(tail) <= 3 else tail.capitalize()  # U0CFO is the CFO


def group_handle(group_id: str) -> str:
    """The @handle a group is shown by: `S0FINANCE` is @finance; a real-looking id stays."""
    tail = group_id[2:]
    return tail.lower() if group_id.startswith("S0") and tail.isalpha() else group_id


def directory(users: list[dict], slack: FakeSlack) -> dict[str, str]:
    """Slack id -> the name a mention of it shows, so the page renders `<@U…>` as Slack does."""
    return {u["id"]: u["name"] for u in users} | {g: group_handle(g) for g in slack.usergroups}


def _message(slack: FakeSlack, message: Message) -> dict:
    replies = [{"ts": r.ts, "text": r.text, "blocks": r.blocks} for r in slack.replies(message)]
    return {
        "ts": message.ts,
        "text": message.text,
        "blocks": message.blocks,
        "edited": message.edited,
        "replies": replies,
    }


def workspace_app(slack: FakeSlack, rotor: FakeRotor, policy: Policy, channels: list[str]):
    users = people(policy, slack)
    # Everyone on the page but the guest is in every channel.
    slack.members = {c: [u["id"] for u in users if u["id"] != GUEST] for c in channels}
    names = directory(users, slack)
    page = files("app.sandbox").joinpath("workspace.html").read_text()

    async def index(_request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def state(request: Request) -> JSONResponse:
        user = request.query_params.get("user", VISITOR)
        return JSONResponse(
            {
                "users": users,
                "directory": names,
                "sync_seconds": policy.sync.every.total_seconds(),
                "rotor_rate": {
                    "limit": rotor.requests_per_minute,
                    "last_minute": rotor.requests_last_minute(),
                    "rate_limited": rotor.rate_limited,
                },
                "channels": [
                    {
                        "id": c,
                        "name": channel_name(c),
                        "messages": [_message(slack, m) for m in slack.channel_messages(c)],
                    }
                    for c in channels
                ]
                + [
                    {
                        "id": dm_channel(user),
                        "name": "direct-messages",
                        "messages": [_message(slack, m) for m in slack.dms_for(user)],
                    }
                ],
                "ephemerals": [asdict(e) for e in slack.ephemerals_for(user)],
                "home": slack.homes[user].blocks if user in slack.homes else None,
                "views": [
                    v for v in slack.views.values() if v["user"] == user and not v.get("closed")
                ],
                "approvals": [
                    {k: v for k, v in a.items() if k != "payload"} for a in rotor.newest_first()
                ],
                "queues": sorted(
                    {q.name for q in policy.queues} | {e[0] for e in EXAMPLES.values()}
                ),
                "examples": {name: {"queue": q, "payload": p} for name, (q, p) in EXAMPLES.items()},
                "clock_hours": clock.offset().total_seconds() / 3600,
            }
        )

    def _source(body: dict) -> Message | Ephemeral | HomeTab:
        if body.get("home"):
            return slack.homes[body["user"]]
        if body.get("ephemeral") is not None:
            return next(e for e in slack.ephemerals if e.id == body["ephemeral"])
        return next(
            m for m in slack.messages if m.channel == body["channel"] and m.ts == body["ts"]
        )

    async def click(request: Request) -> JSONResponse:
        body = await request.json()
        response = await asyncio.to_thread(
            slack.click, body["user"], _source(body), body["action_id"], body.get("value")
        )
        return JSONResponse({"status": response.status_code})

    async def open_home(request: Request) -> JSONResponse:
        body = await request.json()
        response = await asyncio.to_thread(slack.open_home, body["user"])
        return JSONResponse({"status": response.status_code})

    async def submit(request: Request) -> JSONResponse:
        body = await request.json()
        response = await asyncio.to_thread(
            slack.submit_view, body["user"], body["view_id"], body["values"]
        )
        answer = response.json() if response.content else {}
        if response.status_code == 200 and answer.get("response_action") != "errors":
            slack.views[body["view_id"]]["closed"] = True
        return JSONResponse({"status": response.status_code, "answer": answer})

    async def close(request: Request) -> JSONResponse:
        body = await request.json()
        slack.views[body["view_id"]]["closed"] = True
        return JSONResponse({"ok": True})

    async def slash(request: Request) -> JSONResponse:
        body = await request.json()
        text = body["text"].strip()
        command, _, rest = text.partition(" ")
        if command != "/approvals":
            return JSONResponse({"error": "Only /approvals is installed here."}, 400)
        response = await asyncio.to_thread(slack.slash, body["user"], body["channel"], rest)
        return JSONResponse({"status": response.status_code})

    async def enqueue(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            payload = json.loads(body["payload"])
        except ValueError as e:
            return JSONResponse({"error": f"The payload is not JSON: {e}"}, 400)
        if not body.get("queue"):
            return JSONResponse({"error": "Name a queue."}, 400)
        approval = await asyncio.to_thread(rotor.enqueue, body["queue"], payload)
        return JSONResponse({"id": approval["id"]})

    async def decide(request: Request) -> JSONResponse:
        body = await request.json()
        # Rotor sends the decision event from here: not on this server's event loop.
        await asyncio.to_thread(
            rotor.decide_outside, body["id"], body["status"], body.get("reason") or None
        )
        return JSONResponse({"ok": True})

    async def webhook_test(_request: Request) -> JSONResponse:
        """What `rotor.webhooks.test()` does: the service answers and logs a line."""
        try:
            response = await asyncio.to_thread(rotor.send_test)
        except httpx.HTTPError as e:
            return JSONResponse({"error": f"The service did not answer: {type(e).__name__}"})
        return JSONResponse({"status": response.status_code})

    async def advance(request: Request) -> JSONResponse:
        body = await request.json()
        hours = body.get("hours")
        if not isinstance(hours, int | float) or not 0 < hours <= 24 * 30:
            return JSONResponse({"error": "hours: a number from 0 to 720"}, 400)
        clock.advance(timedelta(hours=hours))
        return JSONResponse({"clock_hours": clock.offset().total_seconds() / 3600})

    return Starlette(
        middleware=[Middleware(SameOriginOnly)],
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/api/click", click, methods=["POST"]),
            Route("/api/home", open_home, methods=["POST"]),
            Route("/api/submit", submit, methods=["POST"]),
            Route("/api/close", close, methods=["POST"]),
            Route("/api/slash", slash, methods=["POST"]),
            Route("/api/enqueue", enqueue, methods=["POST"]),
            Route("/api/decide", decide, methods=["POST"]),
            Route("/api/webhook-test", webhook_test, methods=["POST"]),
            Route("/api/clock", advance, methods=["POST"]),
        ],
    )
