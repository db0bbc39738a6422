"""The Slack app manifest: the top-level manifest.yml, shipped in the package, filled in."""

from __future__ import annotations

import ipaddress
from importlib.resources import files
from urllib.parse import urlsplit

PLACEHOLDER = "https://YOUR-HOST"
EVENTS_PATH = "/slack/events"


def base_url(url: str) -> str:
    """The service's public base URL from what an operator typed: the base itself or the full
    events URL. ValueError saying why Slack would refuse it (not https, not public, a query)."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("Slack needs a public https:// URL, like https://bot.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("give the address alone: no ?query, #fragment or user:password@")
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    private = address is not None and not address.is_global
    if private or host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise ValueError(
            f"{host} is not reachable from Slack: use the service's public address "
            "(or rotor-slack manifest --socket-mode, with no inbound URL at all)"
        )
    path = parts.path.rstrip("/").removesuffix(EVENTS_PATH)
    return f"https://{parts.netloc}{path}"


def text() -> str:
    """The manifest as shipped (app/manifest.yml is the top-level file)."""
    return files("app").joinpath("manifest.yml").read_text()


def with_url(manifest: str, url: str) -> str:
    """Request URLs pointing at the base `url` (https://host[/prefix], from `base_url`)."""
    return manifest.replace(PLACEHOLDER, url)


def for_socket_mode(manifest: str) -> str:
    """No request URLs (Slack sends everything over the socket), socket_mode_enabled: true."""
    lines = [line for line in manifest.splitlines(keepends=True) if PLACEHOLDER not in line]
    return "".join(lines).replace("socket_mode_enabled: false", "socket_mode_enabled: true")
