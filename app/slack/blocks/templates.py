"""A queue's `title`, `fields` and `link` templates, rendered from an approval's masked
payload (their grammar, checked at start-up, is `app.templates`). Pure. Payload values are
untrusted: each is put on one clean line and clipped; the caller escapes where Slack parses
mrkdwn, and link values are percent-encoded so they cannot change the URL's scheme or host."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from string import Formatter
from typing import Any
from urllib.parse import quote, urlsplit

from app.config import QueueRules
from app.payload import MISSING as NOT_THERE
from app.payload import at_path
from app.slack.blocks.text import (
    PREVIEW_CHARS,
    clip,
    clip_mrkdwn,
    escape,
    mask_secrets,
    mrkdwn,
    one_line_clean,
)
from app.templates import MAX_FIELDS, RESERVED

MISSING = "?"
VALUE_CHARS = 200  # one substituted value
FIELD_CHARS = 1900  # Slack's section field is 2000
FIELDS_CHARS = 3000  # all fields together, so that a message keeps within Slack's limit
URL_CHARS = 3000  # Slack's button url limit


def label(path: str) -> str:
    """`beneficiary.name` -> "Beneficiary name"."""
    words = re.sub(r"[._-]+", " ", re.sub(r"(?<=[a-z])(?=[A-Z])", " ", path)).strip()
    return (words[:1].upper() + words[1:].lower())[:100] or path


@dataclass(frozen=True)
class Facts:
    """What templates may use: the masked payload and the three reserved names."""

    payload: Any
    job_id: str
    approval_id: str
    queue: str

    @classmethod
    def of(
        cls,
        payload: Any,
        job_id: str,
        approval_id: str,
        queue: str,
        mask: Collection[str] = (),
        keep: Collection[str] = (),
        limit: int = PREVIEW_CHARS,
    ) -> Facts:
        """`payload` masked by a bounded walk: what a preview of `limit` characters shows, and
        the `keep` paths (those the templates name: see `wanted`) wherever they are."""
        return cls(
            mask_secrets(payload, paths=mask, limit=limit, keep=keep), job_id, approval_id, queue
        )

    def value(self, path: str) -> str:
        """The value at `path`, on one clean clipped line; `?` when the payload lacks it."""
        if path in RESERVED:
            raw: Any = getattr(self, path)
        else:
            raw = at_path(self.payload, path)
        if raw is None or raw is NOT_THERE:
            return MISSING
        if isinstance(raw, float) and raw.is_integer() and abs(raw) < 1e15:
            raw = int(raw)  # 48500.0 reads as 48500
        text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        return one_line_clean(text, VALUE_CHARS)


def named(rules: QueueRules) -> frozenset[str]:
    """The payload paths a queue's title, fields and link name (for `Facts.of`'s `keep`)."""
    names = set(rules.fields)
    for template in (rules.title, rules.link):
        if template:
            names.update(n for _, n, _, _ in Formatter().parse(template) if n)
    return frozenset(names - set(RESERVED))


def render(template: str, facts: Facts, quote_value: Callable[[str], str] = str) -> str:
    out = []
    for literal, name, _, _ in Formatter().parse(template):
        out.append(literal)
        if name is not None:
            out.append(quote_value(facts.value(name)))
    return "".join(out)


def title(template: str | None, facts: Facts | None, default: str) -> str:
    """Plain text (never parsed), one line, clipped to the header's 150 characters. A template
    none of whose payload paths the payload has gives `default` (not "Pay ? ? to ?")."""
    resolved = template and facts and _resolves(template, facts)
    text = render(template, facts) if template and facts and resolved else default
    return clip(one_line_clean(text, 1000), 150)


def _resolves(template: str, facts: Facts) -> bool:
    paths = [n for _, n, _, _ in Formatter().parse(template) if n and n not in RESERVED]
    return not paths or any(facts.value(p) != MISSING for p in paths)


def fields(paths: list[str], facts: Facts) -> list[str]:
    """`*Label*\\nvalue` mrkdwn, at most ten, sharing FIELDS_CHARS (measured as sent)."""
    paths = paths[:MAX_FIELDS]
    each = min(FIELD_CHARS, FIELDS_CHARS // max(1, len(paths)))
    return [clip_mrkdwn(f"*{escape(label(p))}*\n{escape(facts.value(p))}", each) for p in paths]


def field_objects(paths: list[str], facts: Facts) -> list:
    return [mrkdwn(f) for f in fields(paths, facts)]


def link(template: str | None, facts: Facts) -> str | None:
    """The rendered URL, or None unless it is http(s) with the template's own host."""
    if not template:
        return None
    url = render(template, facts, lambda v: quote(v, safe=""))
    parts, meant = urlsplit(url), urlsplit(template)
    if parts.scheme not in ("http", "https") or parts.netloc != meant.netloc:
        return None
    return url if len(url) <= URL_CHARS else None
