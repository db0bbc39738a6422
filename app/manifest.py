"""The Slack app manifest: the top-level manifest.yml, shipped in the package, filled in."""

from __future__ import annotations

from importlib.resources import files

PLACEHOLDER = "https://YOUR-HOST"


def text() -> str:
    """The manifest as shipped (app/manifest.yml is the top-level file)."""
    return files("app").joinpath("manifest.yml").read_text()


def with_url(manifest: str, url: str) -> str:
    """Request URLs pointing at `url` (https://host[/prefix])."""
    return manifest.replace(PLACEHOLDER, url.rstrip("/"))


def for_socket_mode(manifest: str) -> str:
    """No request URLs (Slack sends everything over the socket), socket_mode_enabled: true."""
    lines = [line for line in manifest.splitlines(keepends=True) if PLACEHOLDER not in line]
    return "".join(lines).replace("socket_mode_enabled: false", "socket_mode_enabled: true")
