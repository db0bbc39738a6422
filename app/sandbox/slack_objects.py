"""What the Slack stand-in keeps (messages, ephemerals, response URLs, faults to inject) and the
Block Kit rules it enforces as Slack does."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_BLOCKS_MAX, MODAL_BLOCKS_MAX = 50, 100
MESSAGE_CHARS_MAX = 13_000  # msg_blocks_too_long beyond about this many characters
TEXT_MAX = 4_000
VIEW_BYTES_MAX = 250_000
TEXT_OBJECT_MAX = 3_000  # any plain_text or mrkdwn object
# (block or element type, key) -> the most characters of its text (each one, for a list).
FIELD_LIMITS = {
    ("header", "text"): 150,
    ("section", "text"): 3_000,
    ("section", "fields"): 2_000,
    ("button", "text"): 75,
    ("confirm", "title"): 100,
    ("confirm", "text"): 300,
    ("confirm", "confirm"): 30,
    ("confirm", "deny"): 30,
    ("input", "label"): 2_000,
    ("input", "hint"): 2_000,
    ("plain_text_input", "placeholder"): 150,
    ("modal", "title"): 24,
    ("modal", "submit"): 24,
    ("modal", "close"): 24,
}
STRING_LIMITS = {"block_id": 255, "action_id": 255, "value": 2_000, "url": 3_000}
METADATA_MAX = 3_000  # a view's private_metadata
TRIGGER_SECONDS = 3.0
RESPONSE_URL_USES = 5
TEAM = "T0SANDBOX"
BOT_USER = "U0ROTORBOT"


class SlackError(Exception):
    def __init__(self, error: str, status: int = 200, headers: dict | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.headers = error, status, headers or {}


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict]
    user: str = BOT_USER
    thread_ts: str | None = None
    metadata: dict | None = None
    edited: bool = False


@dataclass
class Ephemeral:
    id: int
    channel: str
    user: str
    text: str
    blocks: list[dict]
    ts: str = ""  # when it was shown, on the same clock as messages' ts (for their order)


@dataclass
class HomeTab:
    """The view the app last published on a person's Home tab."""

    user: str
    view_id: str
    blocks: list[dict]
    view: dict


@dataclass
class ResponseUrl:
    user: str
    channel: str
    message_ts: str | None = None  # a channel message the action came from
    ephemeral_id: int | None = None  # or an ephemeral message
    uses: int = 0


@dataclass
class Fault:
    """Answer calls of `method` ("*" for all) with `status` / `error` instead of doing them.

    `count` calls (None: until removed), a random `share` of them, only for `channel` if set;
    `delay` answers that late (a timeout for the client); `error` None does the call and
    answers it as usual, only `delay` late (a slow Slack); `after_effect` does the call first,
    so the caller cannot know it happened; `threaded` True or False hits only thread replies or
    only top-level posts.
    """

    method: str
    count: int | None = 1
    share: float = 1.0
    status: int = 500
    error: str | None = "internal_error"
    retry_after: int | None = None
    delay: float = 0.0
    after_effect: bool = False
    channel: str | None = None
    threaded: bool | None = None

    def hits(self, method: str, args: dict) -> bool:
        return (
            self.method in (method, "*")
            and (self.count is None or self.count > 0)
            and (self.channel is None or args.get("channel") == self.channel)
            and (self.threaded is None or bool(args.get("thread_ts")) == self.threaded)
            and random.random() < self.share
        )


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


def slack_len(text: str) -> int:
    """Characters as Slack counts them against its limits, on the text as sent (escaped). How
    it counts one beyond the BMP (most emoji) is not documented: as two (UTF-16), the stricter
    count, here."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def _over(value: Any, limit: int) -> bool:
    return isinstance(value, str) and slack_len(value) > limit


def check_limits(value: Any, kind: str | None = None) -> None:
    """Raise SlackError('invalid_blocks') for any text past Slack's limit for where it is:
    text objects, section text and fields, headers, buttons, confirm dialogs, inputs, ids."""
    if isinstance(value, list):
        for item in value:
            check_limits(item, kind)
        return
    if not isinstance(value, dict):
        return
    if isinstance(value.get("type"), str):
        kind = value["type"]
    if kind in ("plain_text", "mrkdwn") and _over(value.get("text"), TEXT_OBJECT_MAX):
        raise SlackError("invalid_blocks")
    for key, child in value.items():
        if key in STRING_LIMITS and _over(child, STRING_LIMITS[key]):
            raise SlackError("invalid_blocks")
        limit = FIELD_LIMITS.get((kind or "", key))
        if limit is not None:
            for obj in child if isinstance(child, list) else [child]:
                if _over(obj.get("text") if isinstance(obj, dict) else obj, limit):
                    raise SlackError("invalid_blocks")
        check_limits(child, "confirm" if key == "confirm" and isinstance(child, dict) else kind)


def validate_blocks(blocks: Any, modal: bool = False) -> None:
    """Raise SlackError('invalid_blocks' / 'msg_blocks_too_long') as Slack would, measuring
    text as sent, as Slack counts it."""
    limit = MODAL_BLOCKS_MAX if modal else MESSAGE_BLOCKS_MAX
    if not isinstance(blocks, list) or len(blocks) > limit:
        raise SlackError("invalid_blocks")
    block_ids, action_ids = set(), set()
    for raw in blocks:
        if not isinstance(raw, dict):
            raise SlackError("invalid_blocks")
        try:
            parsed = Block.parse(dict(raw))
            if parsed is None:
                raise SlackError("invalid_blocks")
            parsed.to_dict()  # runs slack_sdk's validators (lengths, counts)
        except (SlackObjectFormationError, TypeError, ValueError, AttributeError):
            raise SlackError("invalid_blocks") from None
        check_limits(raw)
        block_id = raw.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                raise SlackError("invalid_blocks")
            block_ids.add(block_id)
        for element in raw.get("elements") or []:
            if isinstance(element, dict) and "action_id" in element:
                if element["action_id"] in action_ids:
                    raise SlackError("invalid_blocks")
                action_ids.add(element["action_id"])
    if not modal and _text_length(blocks) > MESSAGE_CHARS_MAX:
        raise SlackError("msg_blocks_too_long")


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return slack_len(value)
    if isinstance(value, dict):
        return sum(_text_length(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    return 0


def check_view(view: Any, kind: str) -> dict:
    """A view as Slack accepts it for `kind` ("modal" or "home"), else SlackError."""
    if isinstance(view, str):
        view = json.loads(view)
    if not isinstance(view, dict) or view.get("type") != kind:
        raise SlackError("invalid_arguments")
    if len(json.dumps(view)) > VIEW_BYTES_MAX:  # as slack_sdk sends it: non-ASCII escaped
        raise SlackError("view_too_large")
    if _over(view.get("private_metadata"), METADATA_MAX):
        raise SlackError("invalid_arguments")
    try:
        check_limits({k: v for k, v in view.items() if k != "blocks"})
    except SlackError:
        raise SlackError("invalid_arguments") from None
    try:
        View(**view).to_dict()
    except (SlackObjectFormationError, TypeError, ValueError):
        raise SlackError("invalid_arguments") from None
    validate_blocks(view.get("blocks") or [], modal=True)
    return view


def dm_channel(user: str) -> str:
    """The id of the app's DM with a user (Slack answers a D… id for a post to a user id)."""
    return "D" + user[1:]
