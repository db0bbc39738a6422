"""People acting in the Slack stand-in: the signed requests Slack sends the app when someone
clicks a button, submits a modal or runs a slash command."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from app.sandbox.slack_objects import (
    TEAM,
    Ephemeral,
    HomeTab,
    Message,
    ResponseUrl,
    dm_channel,
)
from app.sandbox.socket_mode import SocketModeServer, envelope_parts

APP_ID = "A0ROTORSLACK"


def sign_slack(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


class PeopleInSlack:
    """Mixed into FakeSlack: what its people do, sent to the app as Slack sends it."""

    # FakeSlack's state and helpers, which these act on.
    app_token: str | None
    socket: SocketModeServer
    signing_secret: str
    app_url: str
    _http: httpx.Client
    _lock: threading.RLock
    _ids: Iterator[int]
    people_seen: set[str]
    homes: dict[str, HomeTab]
    views: dict[str, dict]
    ephemerals: list[Ephemeral]
    _new_response_url: Callable[[ResponseUrl], str]
    _new_trigger: Callable[[str], str]
    _next_ts: Callable[[], str]

    def _send(
        self, form: dict[str, str], timestamp: int | None = None, app_url: str | None = None
    ) -> httpx.Response:
        if self.app_token is not None:  # Socket Mode: an envelope over the app's own socket
            return self.socket.send(*envelope_parts(form))
        body = urllib.parse.urlencode(form)
        headers = sign_slack(self.signing_secret, body, timestamp)
        return self._http.post(app_url or self.app_url, content=body, headers=headers)

    def _send_event(self, event: dict, app_url: str | None = None) -> httpx.Response:
        """An Events API callback: JSON, signed like the rest."""
        callback = {
            "token": "unused",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "event": event,
        }
        if self.app_token is not None:  # Socket Mode
            return self.socket.send("events_api", callback, False)
        body = json.dumps(callback)
        headers = sign_slack(self.signing_secret, body) | {"Content-Type": "application/json"}
        return self._http.post(app_url or self.app_url, content=body, headers=headers)

    def open_home(self, user: str, app_url: str | None = None) -> httpx.Response:
        """`user` opens the app's Home tab: Slack sends app_home_opened (to `app_url`)."""
        with self._lock:
            self.people_seen.add(user)
            shown = self.homes.get(user)
        event = {
            "type": "app_home_opened",
            "user": user,
            "channel": dm_channel(user),
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
            **({"view": {**shown.view, "id": shown.view_id}} if shown else {}),
        }
        return self._send_event(event, app_url)

    def click(
        self,
        user: str,
        source: Message | Ephemeral | HomeTab,
        action_prefix: str,
        value: str | None = None,
        forge: dict | None = None,
        app_url: str | None = None,
    ) -> httpx.Response:
        """Click the first button whose action_id starts with `action_prefix` (and has `value`).

        `forge` overrides fields of the signed request, to see what the service does with values
        it did not make: `{"value": …}` on the action, any other key on the payload.
        `app_url` sends this one click to another replica than `self.app_url`.
        """
        if isinstance(source, HomeTab):
            return self._click_home(user, source, action_prefix, value)
        with self._lock:
            block, button = _find_button(source.blocks, action_prefix, value)
            ephemeral = isinstance(source, Ephemeral)
            target = ResponseUrl(
                user,
                source.channel,
                message_ts=None if isinstance(source, Ephemeral) else source.ts,
                ephemeral_id=source.id if isinstance(source, Ephemeral) else None,
            )
            payload = {
                **self._interaction("block_actions", user),
                "container": {
                    "type": "message",
                    "channel_id": source.channel,
                    "is_ephemeral": ephemeral,
                    **({} if ephemeral else {"message_ts": source.ts}),
                },
                "channel": {"id": source.channel, "name": source.channel.lower()},
                "response_url": self._new_response_url(target),
                "actions": [_action(block, button)],
            }
            if not ephemeral:
                payload["message"] = {"ts": source.ts, "text": source.text, "blocks": source.blocks}
            forge = dict(forge or {})
            if "value" in forge:
                payload["actions"][0]["value"] = forge.pop("value")
            payload.update(forge)
        return self._send({"payload": json.dumps(payload)}, app_url=app_url)

    def _interaction(self, kind: str, user: str) -> dict:
        """What every interactive payload carries: who acted, where, and a fresh trigger_id."""
        return {
            "type": kind,
            "team": {"id": TEAM, "domain": "sandbox"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "api_app_id": APP_ID,
            "token": "unused",
            "trigger_id": self._new_trigger(user),
        }

    def _click_home(
        self, user: str, tab: HomeTab, action_prefix: str, value: str | None
    ) -> httpx.Response:
        """A click on a Home tab: the view instead of a message, and no response_url."""
        with self._lock:
            block, button = _find_button(tab.blocks, action_prefix, value)
            payload = {
                **self._interaction("block_actions", user),
                "container": {"type": "view", "view_id": tab.view_id},
                "view": {
                    **tab.view,
                    "id": tab.view_id,
                    "type": "home",
                    "private_metadata": tab.view.get("private_metadata", ""),
                    "callback_id": tab.view.get("callback_id", ""),
                    "state": {"values": {}},
                    "hash": secrets.token_hex(4),
                },
                "actions": [_action(block, button)],
            }
        return self._send({"payload": json.dumps(payload)})

    def submit_view(self, user: str, view_id: str, values: dict[str, dict[str, str]]):
        """Submit a modal; `values` maps block_id -> action_id -> typed text."""
        with self._lock:
            view = self.views[view_id]
        state = {
            block: {action: {"type": "plain_text_input", "value": text}}
            for block, actions in values.items()
            for action, text in actions.items()
        }
        with self._lock:
            payload = self._interaction("view_submission", user)
        payload |= {
            "view": {
                "id": view_id,
                "type": "modal",
                "callback_id": view.get("callback_id"),
                "private_metadata": view.get("private_metadata", ""),
                "blocks": view.get("blocks", []),
                "state": {"values": state},
                "hash": secrets.token_hex(4),
            },
        }
        return self._send({"payload": json.dumps(payload)})

    def slash(self, user: str, channel: str, text: str, command: str = "/approvals"):
        """Run a slash command; an ack that carries a message shows it to the user."""
        with self._lock:
            response_url = self._new_response_url(ResponseUrl(user, channel))
            trigger = self._new_trigger(user)
        form = {
            "token": "unused",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": command,
            "text": text,
            "response_url": response_url,
            "trigger_id": trigger,
            "api_app_id": APP_ID,
        }
        response = self._send(form)
        if response.status_code == 200 and response.content:
            # Slack shows an ack's body to the user: JSON with text/blocks, or plain text.
            is_json = response.headers.get("content-type", "").startswith("application/json")
            body: dict[str, Any] = response.json() if is_json else {"text": response.text}
            with self._lock:
                self.ephemerals.append(
                    Ephemeral(
                        next(self._ids),
                        channel,
                        user,
                        body.get("text", ""),
                        body.get("blocks", []),
                        self._next_ts(),
                    )
                )
        return response


def _action(block: dict, button: dict) -> dict:
    return {
        "type": "button",
        "action_id": button["action_id"],
        "block_id": block.get("block_id", ""),
        "value": button.get("value"),
        "text": button["text"],
        "action_ts": f"{time.time():.6f}",
    }


def _find_button(blocks: list[dict], prefix: str, value: str | None) -> tuple[dict, dict]:
    for block in blocks:
        for element in block.get("elements") or []:
            if (
                isinstance(element, dict)
                and element.get("type") == "button"
                and element.get("action_id", "").startswith(prefix)
                and (value is None or element.get("value") == value)
            ):
                return block, element
    raise LookupError(f"no button {prefix!r} in the message")
