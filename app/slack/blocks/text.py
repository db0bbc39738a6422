"""Text for Slack: escaping, clipping, masking secrets, dates and ages. Pure."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    MarkdownTextObject,
    RichTextBlock,
    RichTextElementParts,
    RichTextPreformattedElement,
)

PREVIEW_CHARS = 2500  # keeps a message well under Slack's ~13k characters of blocks
MASK = "••••••"
DEEP = "…"  # stands for what lies deeper than MAX_DEPTH
MAX_DEPTH = 12  # levels of a payload shown; deeper parts are elided, so rendering is bounded
# A key is secret if, squeezed to lowercase letters and digits, it contains one of these...
_SECRET_KEY = re.compile(
    r"passw(or)?d|passphrase|secret|token|authori[sz]ation|apikey|privatekey|accesskey|"
    r"credential|cookie|session|signature|bearer|cardnumber|creditcard|cardno|securitycode"
)
# ...or, split at camelCase and separators, has one of these words.
_SECRET_WORDS = frozenset({"pass", "pwd", "pin", "cvv", "cvc", "cvv2", "ssn", "auth", "otp"})
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# Header lists: {"name": "Authorization", "value": "…"}.
_NAME_KEYS, _VALUE_KEYS = ("name", "key", "header"), ("value", "values")
_URL_LOGIN = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@")
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")
# 13-19 digits, maybe grouped by spaces or dashes, not a piece of a longer word or an IBAN.
_CARD = re.compile(r"(?<![\w-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\w-])")
# Control, format (RTL override, zero-width), line and paragraph separators: never shown raw.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def secret_key(key: object) -> bool:
    text = str(key)
    squeezed = re.sub(r"[^a-z0-9]", "", text.lower())
    if _SECRET_KEY.search(squeezed):
        return True
    return any(w.lower() in _SECRET_WORDS for w in _WORDS.findall(text))


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _mask_card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match[0])
    return MASK if 13 <= len(digits) <= 19 and _luhn(digits) else match[0]


def _mask_param(match: re.Match) -> str:
    return f"{match[1]}{match[2]}={MASK}" if secret_key(match[2]) else match[0]


def mask_text(text: str) -> str:
    """A string with card numbers, URL logins and secret query parameters masked."""
    text = _CARD.sub(_mask_card, text)
    if "://" in text:
        text = _URL_LOGIN.sub(lambda m: f"{m[1]}{MASK}@", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_mask_param, text)
    return text


def one_line_clean(text: str, limit: int = 200) -> str:
    """`text` on one line with nothing invisible: control and format characters (RTL override,
    zero-width) and line breaks become spaces, so it cannot fake a line or hide its end."""
    shown = "".join(" " if unicodedata.category(c) in _INVISIBLE else c for c in text)
    return clip(shown.strip(), limit) or "?"


def code(text: str, limit: int = 200) -> str:
    """`text` as an inline code span (mrkdwn) it cannot leave: its own backticks become ˋ."""
    return "`" + escape(one_line_clean(text, limit).replace("`", "ˋ")) + "`"


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack must not auto-link channel names or URLs found in the text.
    return MarkdownTextObject(text=text, verbatim=True)


def mention(slack_id: str) -> str:
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def mask_secrets(
    value: Any, depth: int = MAX_DEPTH, paths: Collection[str] = (), at: str = ""
) -> Any:
    """The payload with secrets masked and anything deeper than `depth` elided.

    Secrets: values under secret-looking keys, header lists (`[{"name": "Authorization",
    "value": …}]`, `[["X-Api-Key", …]]`), URL logins, secret query parameters, card numbers,
    and the dotted `paths` (lists are transparent: `items.iban` is every item's iban)."""
    if isinstance(value, dict | list) and depth <= 0:
        return DEEP
    if isinstance(value, dict):
        named = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), None)
        secret_header = named is not None and secret_key(named)
        out = {}
        for k, v in value.items():
            path = f"{at}.{k}" if at else str(k)
            hidden = secret_key(k) or path in paths or (secret_header and k in _VALUE_KEYS)
            out[k] = MASK if hidden else mask_secrets(v, depth - 1, paths, path)
        return out
    if isinstance(value, list):
        if len(value) == 2 and isinstance(value[0], str) and secret_key(value[0]):
            return [value[0], MASK]
        return [mask_secrets(v, depth - 1, paths, at) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
        return MASK if mask_text(str(abs(value))) == MASK else value
    return value


def pretty_payload(payload: Any, paths: Collection[str] = ()) -> str:
    return json.dumps(mask_secrets(payload, paths=paths), indent=2, ensure_ascii=False, default=str)


def preview(
    payload: Any, limit: int = PREVIEW_CHARS, paths: Collection[str] = (), masked: bool = False
) -> tuple[str, bool]:
    """Pretty, masked JSON cut to `limit` characters; the flag says whether it was cut.
    `masked`: the payload already went through `mask_secrets` (not masked twice)."""
    if masked:
        text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    else:
        text = pretty_payload(payload, paths)
    if len(text) <= limit:
        return text, False
    return text[: limit - 1] + "…", True


def one_line(payload: Any, limit: int = 120, paths: Collection[str] = ()) -> str:
    text = json.dumps(mask_secrets(payload, paths=paths), ensure_ascii=False, default=str)
    return clip(text, limit)


def slack_date(moment: datetime, tokens: str = "{date_short_pretty} at {time}") -> str:
    """A date Slack shows in the reader's own time zone, with a UTC fallback."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    epoch = int(moment.timestamp())
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{epoch}^{tokens}|{fallback}>"


def slack_ago(moment: datetime) -> str:
    """ "3 hours ago", counted by Slack as the reader looks: the text itself never changes."""
    return slack_date(moment, "{ago}")


def age(since: datetime, now: datetime) -> str:
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return "just now"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


def ago(since: datetime | None, now: datetime) -> str:
    """ "just now", "5 min ago", or "age unknown"."""
    if since is None:
        return "age unknown"
    text = age(since, now)
    return text if text == "just now" else f"{text} ago"


def code_block(text: str, block_id: str | None = None) -> RichTextBlock:
    """Shown verbatim: rich-text preformatted is never parsed for mentions or links."""
    return RichTextBlock(
        block_id=block_id,
        elements=[RichTextPreformattedElement(elements=[RichTextElementParts.Text(text=text)])],
    )
