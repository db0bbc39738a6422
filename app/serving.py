"""How `serve` runs uvicorn: bounds on connections, so a flood cannot exhaust the process."""

from __future__ import annotations

import asyncio
import contextlib
import resource

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0  # a request's header block must be complete within this
READ_BYTES = 16 * 1024  # read from a socket at a time


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not finish a request's headers in
    HEADER_SECONDS (uvicorn itself waits for ever, so half-sent headers would hold a file
    descriptor each until the process runs out)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio reads 256 KiB at a time; uvicorn buffers one read past its 64 KiB mark
        # before it pauses, on every connection, before the app can refuse the body.
        if hasattr(transport, "max_size"):  # asyncio's own transports (uvloop has none)
            transport.max_size = READ_BYTES
        self._expect_headers(None)

    def on_response_complete(self) -> None:
        done = self.cycle
        super().on_response_complete()
        self._expect_headers(done)

    def _expect_headers(self, cycle: object) -> None:
        # A request whose headers arrive starts a new cycle; none did if it is the same.
        self.loop.call_later(HEADER_SECONDS, self._close_if_idle, cycle)

    def _close_if_idle(self, cycle: object) -> None:
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()


# uvicorn.run() arguments; limit_concurrency counts connections and requests in progress
# (beyond it uvicorn answers 503 itself). Each connection may buffer about 64 KiB ahead.
LIMITS = {
    "http": HeaderDeadline,
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
