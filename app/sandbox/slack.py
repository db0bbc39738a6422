"""A strict loopback stand-in for the Slack Web API, and a stand-in for the people in Slack.

It serves the Web API methods the bot calls, refusing what Slack refuses (Block Kit over its
limits, stale `trigger_id`s, posts faster than the per-channel limit), keeps the messages,
threads, ephemeral messages and modals it was sent, and sends the app signed requests as
Slack would when a person clicks, submits a modal or runs a slash command.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import threading
import time
import urllib.parse
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.sandbox.slack_objects import (
    BOT_USER,
    RESPONSE_URL_USES,
    TEAM,
    TEXT_MAX,
    TRIGGER_SECONDS,
    Ephemeral,
    Fault,
    HomeTab,
    Message,
    ResponseUrl,
    SlackError,
    _Bucket,
    check_view,
    dm_channel,
    slack_len,
    validate_blocks,
)
from app.sandbox.slack_people import PeopleInSlack
from app.sandbox.socket_mode import SocketModeServer

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class FakeSlack(PeopleInSlack):
    def __init__(
        self,
        token: str,
        signing_secret: str,
        channels: list[str],
        posts_per_second: float = 1.0,
        burst: int = 2,
        app_token: str | None = None,
    ) -> None:
        self.token, self.signing_secret = token, signing_secret
        # Set: the app is in Socket Mode, and people's requests go to it over its socket.
        self.app_token = app_token
        self.socket = SocketModeServer()
        self.channels = set(channels)
        self.posts_per_second, self.burst = posts_per_second, burst
        self.absent_from: set[str] = set()  # channels the bot was not invited to
        self.usergroups: dict[str, list[str]] = {}
        # Channel members; a channel not listed has everyone in it who has acted so far.
        self.members: dict[str, list[str]] = {}
        self.people_seen: set[str] = set()
        self.emails: dict[str, str] = {}  # email -> user id, for users.lookupByEmail
        self.app_url = ""  # the service's /slack/events, set once it runs
        self.base_url = ""  # ours, set once we run
        self.page_url = ""  # the sandbox's workspace page, where permalinks open
        self.messages: list[Message] = []
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, dict] = {}
        self.homes: dict[str, HomeTab] = {}  # user -> their Home tab as last published
        self.calls: list[tuple[str, dict]] = []
        self.faults: list[Fault] = []
        self._triggers: dict[str, tuple[float, str]] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._http = httpx.Client(trust_env=False, timeout=10)  # one for every signed request
        self.app = Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/response/{key}", self._response_url, methods=["POST"]),
                Route("/archives/{channel}/{message}", self._archive),
                WebSocketRoute("/socket-mode/{ticket}", self.socket.endpoint),
            ]
        )

    async def _archive(self, request: Request) -> Response:
        """A permalink opened in a browser: the message on the sandbox page, as Slack would."""
        channel, message = request.path_params["channel"], request.path_params["message"]
        if not self.page_url:
            return PlainTextResponse(f"message {message} in {channel}", 200)
        return RedirectResponse(f"{self.page_url}/#/archives/{channel}/{message}", 302)

    # --- what tests and the sandbox page read ---------------------------------------------

    def channel_messages(self, channel: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    def replies(self, message: Message) -> list[Message]:
        with self._lock:
            return [
                m
                for m in self.messages
                if m.channel == message.channel and m.thread_ts == message.ts
            ]

    def find(self, approval_id: str) -> list[Message]:
        """Top-level messages posted for an approval (by their metadata)."""
        with self._lock:
            return [
                m
                for m in self.messages
                if (m.metadata or {}).get("event_payload", {}).get("approval_id") == approval_id
            ]

    def dms_for(self, user: str) -> list[Message]:
        """What the app wrote to `user` in its Messages tab (a DM)."""
        return self.channel_messages(dm_channel(user))

    def ephemerals_for(self, user: str) -> list[Ephemeral]:
        with self._lock:
            return [e for e in self.ephemerals if e.user == user]

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for name, _ in self.calls if name == method)

    def fail(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()

    # --- the Web API ------------------------------------------------------------------------

    async def _api(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        args: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if body:
            if request.headers.get("content-type", "").startswith("application/json"):
                args.update(json.loads(body))
            else:
                args.update(urllib.parse.parse_qsl(body.decode()))
        try:
            # apps.connections.open takes the app-level token, every other method the bot's.
            token = self.app_token if method == "apps.connections.open" else self.token
            if token is None or request.headers.get("authorization") != f"Bearer {token}":
                raise SlackError("invalid_auth")
            handler = getattr(self, "api_" + method.replace(".", "_"), None)
            if handler is None:
                raise SlackError("unknown_method", status=404)
            with self._lock:
                self.calls.append((method, args))
                fault = next((f for f in self.faults if f.hits(method, args)), None)
                if fault is not None and fault.count is not None:
                    fault.count -= 1
            if fault is not None:
                if fault.after_effect:
                    with self._lock:
                        handler(args)
                await asyncio.sleep(fault.delay)
                if fault.error is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                    raise SlackError(fault.error, fault.status, headers)
            with self._lock:
                result = handler(args)
        except SlackError as e:
            return JSONResponse({"ok": False, "error": e.error}, e.status, headers=e.headers)
        return JSONResponse({"ok": True, **result})

    def _channel(self, args: dict) -> str:
        channel = args.get("channel")
        if isinstance(channel, str) and USER_ID.fullmatch(channel):
            return dm_channel(channel)  # a user id: the app's DM with that person
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        if channel in self.absent_from:
            raise SlackError("not_in_channel")
        return channel

    def _message_args(self, args: dict) -> tuple[str, list[dict]]:
        text = args.get("text") or ""
        blocks = args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            raise SlackError("no_text")
        if slack_len(text) > TEXT_MAX:
            raise SlackError("msg_too_long")
        if blocks:
            validate_blocks(blocks)
        if args.get("link_names") in (True, "true", "1", 1):
            raise SlackError("link_names_not_allowed_here")  # the bot must never ping by name
        return text, blocks

    def _take_post_token(self, channel: str) -> None:
        now = time.monotonic()
        bucket = self._buckets.setdefault(channel, _Bucket(tokens=self.burst))
        bucket.tokens = min(
            self.burst, bucket.tokens + (now - bucket.updated) * self.posts_per_second
        )
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.posts_per_second
            raise SlackError("ratelimited", 429, {"Retry-After": str(max(1, math.ceil(wait)))})
        bucket.tokens -= 1

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def api_auth_test(self, args: dict) -> dict:
        return {
            "url": f"{self.base_url}/",
            "team": "Sandbox",
            "team_id": TEAM,
            "user": "rotor",
            "user_id": BOT_USER,
        }

    def api_apps_connections_open(self, args: dict) -> dict:
        return {"url": self.socket.open_url(self.base_url)}

    def api_chat_postMessage(self, args: dict) -> dict:
        channel = self._channel(args)
        text, blocks = self._message_args(args)
        thread_ts = args.get("thread_ts")
        if thread_ts and not any(m.ts == thread_ts for m in self.channel_messages(channel)):
            raise SlackError("thread_not_found")
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        self._take_post_token(channel)
        message = Message(channel, self._next_ts(), text, blocks, thread_ts=thread_ts)
        message.metadata = metadata
        self.messages.append(message)
        return {"channel": channel, "ts": message.ts, "message": {"text": text, "ts": message.ts}}

    def api_chat_update(self, args: dict) -> dict:
        channel = self._channel(args)
        text, blocks = self._message_args(args)
        message = next(
            (m for m in self.messages if m.channel == channel and m.ts == args.get("ts")), None
        )
        if message is None:
            raise SlackError("message_not_found")
        old_types = {b.get("block_id"): b.get("type") for b in message.blocks}
        for block in blocks:
            old = old_types.get(block.get("block_id"))
            if old == "rich_text" and block.get("type") != "rich_text":
                raise SlackError("block_mismatch")
        message.text, message.blocks, message.edited = text, blocks, True
        return {"channel": channel, "ts": message.ts, "text": text}

    def api_chat_getPermalink(self, args: dict) -> dict:
        channel = self._channel(args)
        ts = args.get("message_ts", "")
        if not any(m.ts == ts for m in self.channel_messages(channel)):
            raise SlackError("message_not_found")
        link = f"{self.base_url}/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def api_conversations_history(self, args: dict) -> dict:
        channel = self._channel(args)
        limit = int(args.get("limit") or 100)
        with_metadata = str(args.get("include_all_metadata")).lower() in ("true", "1")
        newest_first = list(reversed(self.channel_messages(channel)))[:limit]
        return {
            "messages": [
                {
                    "ts": m.ts,
                    "text": m.text,
                    **({"metadata": m.metadata} if with_metadata and m.metadata else {}),
                }
                for m in newest_first
            ],
            "has_more": False,
        }

    def api_users_lookupByEmail(self, args: dict) -> dict:
        user = self.emails.get(str(args.get("email", "")).lower())
        if user is None:
            raise SlackError("users_not_found")
        return {"user": {"id": user, "profile": {"email": args["email"]}}}

    def api_usergroups_users_list(self, args: dict) -> dict:
        group = args.get("usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def api_conversations_members(self, args: dict) -> dict:
        """Members a page at a time (`limit` up to 1000, then `response_metadata.next_cursor`)."""
        channel = self._channel(args)
        with self._lock:
            everyone = sorted(self.members.get(channel, self.people_seen))
        try:
            limit = min(int(args.get("limit") or 100), 1000)
            start = int(args.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor") from None
        page = everyone[start : start + limit]
        more = start + limit < len(everyone)
        return {
            "members": page,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def api_views_open(self, args: dict) -> dict:
        trigger = args.get("trigger_id")
        issued = self._triggers.pop(trigger, None) if isinstance(trigger, str) else None
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if time.monotonic() - issued[0] > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        view = check_view(args.get("view"), "modal")
        view_id = f"V{next(self._ids):08d}"
        self.views[view_id] = {**view, "id": view_id, "user": issued[1]}
        return {"view": self.views[view_id]}

    def api_views_publish(self, args: dict) -> dict:
        user = args.get("user_id")
        if not isinstance(user, str) or not USER_ID.fullmatch(user):
            raise SlackError("invalid_arguments")
        view = check_view(args.get("view"), "home")
        old = self.homes.get(user)
        view_id = old.view_id if old else f"V{next(self._ids):08d}"
        self.homes[user] = HomeTab(user, view_id, view.get("blocks") or [], view)
        return {"view": {**view, "id": view_id}}

    # --- response_url -----------------------------------------------------------------------

    async def _response_url(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        with self._lock:
            target = self._response_urls.get(request.path_params["key"])
            if target is None or target.uses >= RESPONSE_URL_USES:
                return JSONResponse({"ok": False, "error": "used_url"}, 404)
            target.uses += 1
            try:
                self._respond(target, body)
            except SlackError as e:
                return JSONResponse({"ok": False, "error": e.error}, 400)
        return JSONResponse({"ok": True})

    def _respond(self, target: ResponseUrl, body: dict) -> None:
        text, blocks = self._message_args(body)
        if body.get("replace_original") and target.ephemeral_id is not None:
            for e in self.ephemerals:
                if e.id == target.ephemeral_id:
                    e.text, e.blocks = text, blocks
            return
        if body.get("replace_original") and target.message_ts is not None:
            for m in self.messages:
                if m.channel == target.channel and m.ts == target.message_ts:
                    m.text, m.blocks, m.edited = text, blocks, True
            return
        if body.get("response_type") == "in_channel":
            self.messages.append(Message(target.channel, self._next_ts(), text, blocks))
            return
        self.ephemerals.append(
            Ephemeral(next(self._ids), target.channel, target.user, text, blocks, self._next_ts())
        )

    def _new_response_url(self, target: ResponseUrl) -> str:
        key = secrets.token_hex(8)
        self._response_urls[key] = target
        return f"{self.base_url}/response/{key}"

    def _new_trigger(self, user: str) -> str:
        self.people_seen.add(user)
        trigger = f"{next(self._ids)}.{secrets.token_hex(6)}"
        self._triggers[trigger] = (time.monotonic(), user)
        return trigger
