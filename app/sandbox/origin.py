"""Only this machine's own browser tab may use the sandbox page.

The page's API decides approvals and runs slash commands with no login, so a web page elsewhere
must not reach it: not by a cross-site request (refused by its `Origin` or `Sec-Fetch-Site`),
and not by DNS rebinding, where a foreign name resolves to 127.0.0.1 (refused by its `Host`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def refusal(path: str, headers: Headers) -> str | None:
    """Why a request to the page is refused, or None when it comes from the page itself."""
    host = headers.get("host", "")
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        name = None
    if name not in LOOPBACK_NAMES:
        return "the Host header must name this machine (127.0.0.1 or localhost)"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or parts.netloc.lower() != host.lower():
            return "cross-origin requests are refused"
    if path.startswith("/api/") and headers.get("sec-fetch-site") not in (
        None,
        "same-origin",
        "none",
    ):
        return "cross-site requests are refused"
    return None


class SameOriginOnly:
    """ASGI middleware: answers 403 to any request `refusal` names a reason for."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = refusal(scope["path"], Headers(scope=scope))
            if reason:
                await PlainTextResponse(f"Refused: {reason}.", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
