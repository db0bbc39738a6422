"""Slack's side of Socket Mode on loopback, for the Slack stand-in.

`apps.connections.open` hands out a one-use `ws://` URL; the app connects, gets `hello`, and from
then on receives what people do as envelopes (`interactive`, `slash_commands`, `events_api`) that
it acks with their `envelope_id` (and, for a slash command or a modal, the ack's payload). As at
Slack, each envelope goes to one of the app's open connections (up to 10); one not acked within
3 s, or whose connection drops first, is delivered again, to whichever connection is open then.

People act from other threads (tests, the sandbox page through `asyncio.to_thread`): `send`
blocks until the ack and returns it as the HTTP answer would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field

import httpx
from starlette.websockets import WebSocket, WebSocketDisconnect

MAX_CONNECTIONS = 10  # Slack's limit per app
ACK_SECONDS = 3.0  # Slack waits this long for an envelope's ack
ATTEMPTS = 4  # the first delivery and three more, as Slack retries events
CONNECT_SECONDS = 20.0  # how long an envelope waits for the app to (re)connect
ACK_BYTES = 1 << 20


class _Lost(Exception):
    """The connection closed before the envelope was acked."""


@dataclass(eq=False)
class _Connection:
    name: str
    websocket: WebSocket
    waiting: dict[str, asyncio.Future] = field(default_factory=dict)
    acked: int = 0  # envelopes this connection acked


def envelope_parts(form: dict[str, str]) -> tuple[str, dict, bool]:
    """What a signed HTTP request would have carried, as an envelope's type, payload and
    `accepts_response_payload`."""
    if "payload" in form:
        payload = json.loads(form["payload"])
        return "interactive", payload, payload.get("type") == "view_submission"
    if "command" in form:
        return "slash_commands", dict(form), True
    raise ValueError("not a Slack request form")


class SocketModeServer:
    def __init__(self) -> None:
        self._tickets: set[str] = set()
        self._open: list[_Connection] = []
        self._names = itertools.count(1)
        self._turn = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._changed: asyncio.Event | None = None
        self.redelivered = 0  # envelopes sent again after a missed ack or a dropped socket
        self.cut_after_send = 0  # faults: close the connection just after sending an envelope

    # --- Slack's side ----------------------------------------------------------------------

    def open_url(self, base_url: str) -> str:
        """`apps.connections.open`: a fresh one-use URL."""
        ticket = secrets.token_urlsafe(12)
        self._tickets.add(ticket)
        return f"{base_url.replace('http', 'ws', 1)}/socket-mode/{ticket}"

    async def endpoint(self, websocket: WebSocket) -> None:
        ticket = websocket.path_params.get("ticket", "")
        if ticket not in self._tickets:
            await websocket.close(code=4001)  # refused before the handshake: HTTP 403
            return
        self._tickets.discard(ticket)
        await websocket.accept()
        if len(self._open) >= MAX_CONNECTIONS:
            await websocket.send_json({"type": "disconnect", "reason": "too_many_websockets"})
            await websocket.close()
            return
        self._bind_loop()
        connection = _Connection(f"c{next(self._names)}", websocket)
        self._open.append(connection)
        assert self._changed is not None  # bound just above
        self._changed.set()
        try:
            await websocket.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._open),
                    "debug_info": {"host": "sandbox", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": "A0ROTORSLACK"},
                }
            )
            while True:
                self._ack(connection, await websocket.receive_text())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._open.remove(connection)
            for waiting in connection.waiting.values():
                if not waiting.done():
                    waiting.set_exception(_Lost())

    def _bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._changed = asyncio.Event()
            self._started.set()

    def _ack(self, connection: _Connection, text: str) -> None:
        try:
            message = json.loads(text[:ACK_BYTES])
        except ValueError:
            return  # Slack ignores what it cannot read; the envelope stays unacked
        waiting = connection.waiting.pop(str(message.get("envelope_id")), None)
        if waiting is not None and not waiting.done():
            connection.acked += 1
            waiting.set_result(message.get("payload"))

    # --- what tests read and do --------------------------------------------------------------

    def acks_by_connection(self) -> dict[str, int]:
        """Envelopes acked by each open connection."""
        return {c.name: c.acked for c in list(self._open)}

    def connections(self) -> int:
        return len(self._open)

    def drop(self) -> None:
        """Every connection closes at once, as when a network path goes away."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(5)

    async def _drop_all(self) -> None:
        for connection in list(self._open):
            await _close(connection)

    # --- people acting -----------------------------------------------------------------------

    def send(self, kind: str, payload: dict, accepts_response_payload: bool) -> httpx.Response:
        """Deliver one envelope and wait for its ack: 200 with the ack's payload as the body, as
        over HTTP, or 504 when no connection acked it in any attempt."""
        if not self._started.wait(CONNECT_SECONDS) or self._loop is None:
            return httpx.Response(504, text="the app never connected")
        if _running_loop() is self._loop:
            raise RuntimeError("send() blocks: call it from another thread")
        future = asyncio.run_coroutine_threadsafe(
            self._deliver(kind, payload, accepts_response_payload), self._loop
        )
        acked, answer = future.result(CONNECT_SECONDS + ATTEMPTS * (ACK_SECONDS + 1))
        if not acked:
            return httpx.Response(504, text="the app did not acknowledge")
        return httpx.Response(200, json=answer) if answer else httpx.Response(200)

    async def _deliver(
        self, kind: str, payload: dict, accepts_response_payload: bool
    ) -> tuple[bool, dict | None]:
        for attempt in range(ATTEMPTS):
            connection = await self._a_connection()
            if connection is None:
                return False, None
            envelope_id = secrets.token_hex(16)
            envelope = {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": accepts_response_payload,
            }
            if kind == "events_api":
                envelope |= {"retry_attempt": attempt, "retry_reason": "timeout" if attempt else ""}
            waiting = asyncio.get_running_loop().create_future()
            connection.waiting[envelope_id] = waiting
            try:
                await connection.websocket.send_text(json.dumps(envelope))
                if self.cut_after_send > 0:
                    self.cut_after_send -= 1
                    await _close(connection)
                return True, await asyncio.wait_for(waiting, ACK_SECONDS)
            except (_Lost, TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                connection.waiting.pop(envelope_id, None)
                self.redelivered += attempt + 1 < ATTEMPTS
        return False, None

    async def _a_connection(self) -> _Connection | None:
        """The next open connection in turn, waiting for the app to connect if none is open."""
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                while not self._open:
                    assert self._changed is not None  # bound with the loop, before any send
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return None
        return self._open[next(self._turn) % len(self._open)]


async def _close(connection: _Connection) -> None:
    with contextlib.suppress(RuntimeError, OSError):  # closed already
        await connection.websocket.close(code=1001)  # going away


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
