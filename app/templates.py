"""The template grammar of the policy file's `title`, `fields` and `link`: payload paths in
braces, checked at start-up. Pure, and free of Slack: config reads it, blocks render it."""

from __future__ import annotations

import re
from string import Formatter
from urllib.parse import urlsplit

MAX_FIELDS = 10  # Slack's section holds at most 10 fields
RESERVED = ("job_id", "approval_id", "queue")
_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def check_path(path: str) -> str:
    if not _PATH.match(path):
        raise ValueError(f"{path!r} is not a payload path like beneficiary.name")
    return path


def check_template(template: str) -> str:
    """Raises ValueError saying what is wrong; `{{` and `}}` are literal braces."""
    try:
        parts = list(Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"{template!r} is not a template: {e}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{{{name}}}: formats and conversions are not supported")
        if not name:
            raise ValueError("{} needs a payload path, like {amount}")
        check_path(name)
    return template


def check_link(template: str) -> str:
    check_template(template)
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{template!r} must be an http(s) URL")
    if "{" in parts.netloc or "{" in parts.scheme:
        raise ValueError("the scheme and host must be written out, not taken from the payload")
    return template
