"""How `serve` runs uvicorn: bounds on connections, so a flood cannot exhaust the process."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0  # a request's header block must be complete within this
WAITING_MAX = 500  # connections waiting for a header block; beyond it the oldest is closed
READ_BYTES = 16 * 1024  # read from a socket at a time


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol, bounding connections that have not sent a request's headers
    (uvicorn waits for them for ever, each holding a file descriptor): each is closed after
    HEADER_SECONDS, and beyond WAITING_MAX of them the oldest is closed at once."""

    waiting: ClassVar[dict[GuardedH11, None]] = {}  # oldest first

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio reads 256 KiB at a time, and uvicorn buffers one read past its 64 KiB mark
        # on every connection before the app can refuse the body.
        if hasattr(transport, "max_size"):  # asyncio's own transports (uvloop has none)
            transport.max_size = READ_BYTES
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._before:  # a request's headers have arrived
            self.waiting.pop(self, None)

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if self.cycle is before and not self.transport.is_closing():  # none pipelined
            self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        self._before = self.cycle
        self.waiting[self] = None
        while len(self.waiting) > WAITING_MAX:
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest)
            oldest.transport.close()
        self.loop.call_later(HEADER_SECONDS, self._close_if_waiting, self.cycle)

    def _close_if_waiting(self, cycle: object) -> None:
        # A request whose headers arrive starts a new cycle; none did if it is the same.
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()


# uvicorn.run() arguments. limit_concurrency counts connections and requests in progress
# (beyond it uvicorn answers 503 itself); each may buffer about 64 KiB of body ahead.
LIMITS: dict[str, Any] = {
    "http": GuardedH11,
    "limit_concurrency": 1000,
    "backlog": 1024,
    "timeout_keep_alive": 5,  # seconds an idle keep-alive connection stays open
    "h11_max_incomplete_event_size": 16 * 1024,  # bytes of one header block
}


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: 1024 (a common default) is below
    limit_concurrency plus the database's and Slack's connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit, say
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def listen(host: str, port: int, command: str, option: str = "--port") -> socket.socket:
    """A listening socket on host:port, or one ConfigError line saying what to do instead
    (`command` is how to run it on another port, given with `option`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            problem = f"port {port} is in use on {host}"
        elif e.errno == errno.EACCES:
            problem = f"not allowed to listen on port {port}"
        else:
            problem = f"cannot listen on {host}:{port}: {e.strerror or e}"
        suggestion = 8000 if port < 1024 else port + 1
        from app.config import ConfigError

        raise ConfigError(
            f"{option}: {problem}: choose another, e.g. {command} {option} {suggestion}"
        ) from None
    return sock
