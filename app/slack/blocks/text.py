"""Text for Slack: escaping, clipping, masking secrets, dates and ages. Pure."""

from __future__ import annotations

import json
import re
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
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|api[_-]?key|private[_-]?key|"
    r"credential|cookie|session|signature|bearer",
    re.IGNORECASE,
)


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


def mask_secrets(value: Any, depth: int = MAX_DEPTH) -> Any:
    """The payload with secret-looking keys masked and anything deeper than `depth` elided."""
    if isinstance(value, dict | list) and depth <= 0:
        return DEEP
    if isinstance(value, dict):
        return {
            k: MASK if _SECRET_KEY.search(str(k)) else mask_secrets(v, depth - 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v, depth - 1) for v in value]
    return value


def pretty_payload(payload: Any) -> str:
    return json.dumps(mask_secrets(payload), indent=2, ensure_ascii=False, default=str)


def preview(payload: Any, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    """Pretty, masked JSON cut to `limit` characters; the flag says whether it was cut."""
    text = pretty_payload(payload)
    if len(text) <= limit:
        return text, False
    return text[: limit - 1] + "…", True


def one_line(payload: Any, limit: int = 120) -> str:
    text = json.dumps(mask_secrets(payload), ensure_ascii=False, default=str)
    return clip(text, limit)


def slack_date(moment: datetime) -> str:
    """A date Slack shows in the reader's own time zone, with a UTC fallback."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    epoch = int(moment.timestamp())
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{fallback}>"


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


def code_block(text: str, block_id: str | None = None) -> RichTextBlock:
    """Shown verbatim: rich-text preformatted is never parsed for mentions or links."""
    return RichTextBlock(
        block_id=block_id,
        elements=[RichTextPreformattedElement(elements=[RichTextElementParts.Text(text=text)])],
    )
