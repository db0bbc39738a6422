"""Text for Slack: escaping, clipping, masking secrets, dates and ages. Pure."""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections.abc import Callable, Collection
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
    r"credential|cookie|session|signature|bearer|cardnumber|creditcard|cardno|securitycode|"
    r"socialsecurity|jwt"
)
# ...or, split at camelCase and separators, has one of these words.
_SECRET_WORDS = frozenset({"pass", "pwd", "pin", "cvv", "cvc", "cvv2", "ssn", "auth", "otp"})
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# Header lists, any case: {"name": "Authorization", "value": …}, {"Name": "X-Api-Key", "Value": …}.
_NAME_KEYS = frozenset({"name", "key", "header", "headername", "field", "param", "parameter"})
_VALUE_KEYS = frozenset({"value", "values", "val", "headervalue"})
# Short URL query parameter names that carry secrets (`?sig=`, `?key=`), beside secret_key's.
_SECRET_PARAMS = frozenset({"sig", "key", "pw", "hmac"})

# Every pattern below is linear by construction: possessive or bounded repeats, and classes
# that exclude the character that ends them, so no input can make them backtrack for long.
_URL_LOGIN = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*+://)[^/\s@?#]++@")
# `name=value` at the start, after whitespace, or in a query string (`?`, `&`, `;`).
_PARAM = re.compile(r"(^|[?&;\s])([^=?&;#\s]++)=([^&;#\s]*+)")
# `Authorization: Bearer abc`, `authorization=…` (headers pasted into text).
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authori[sz]ation[\"']?\s*+[:=]\s*+[\"']?)"
    r"((?:bearer|basic|digest|negotiate|token)\s++)?[^\s\"',;]++"
)
_BEARER = re.compile(r"(?i)\b(bearer\s++)[A-Za-z0-9._~+/-]{8,}+=*+")
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]++\.[A-Za-z0-9_.-]*+")
# A PEM private key block, up to its END line or, when that was cut off, the end of the text.
_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]{0,30}PRIVATE KEY[A-Z ]{0,10}-----"
    r".*?(?:-----END [A-Z0-9 ]{0,30}PRIVATE KEY[A-Z ]{0,10}-----|\Z)",
    re.DOTALL,
)
# 13-19 digits, maybe grouped by spaces or dashes (or 3-6 digit groups between dots), not a piece
# of a longer word or number, nor of an IBAN; after `_` is fine (`card_4111…`).
# (A digit first, the look-behinds after it: then the regex engine skips to digits quickly.)
_CARD = re.compile(
    r"\d(?<![^\W_]\d)(?<![-.]\d)(?<!\d[ .-]\d)"
    r"(?:(?:[ -]?\d){12,18}|\d{2,5}(?:\.\d{3,6}){2,4})"
    r"(?![^\W_]|-|\.\d)"
)
# Characters that change how the text around them reads, or hide themselves: bidi embeddings,
# overrides and isolates, zero-width ones, the BOM, invisible operators, tags, C1 controls,
# line and paragraph separators, lone surrogates. Wherever a payload is rendered they are
# shown as their JSON escape (`\u202e`): the approver sees that something is there.
_HIDDEN_RANGES = (
    (0x7F, 0x9F),  # DEL, C1 controls (NEL breaks a line)
    (0xAD, 0xAD),  # soft hyphen
    (0x61C, 0x61C),  # Arabic letter mark
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x200B, 0x200F),  # zero-width space, non-joiner, joiner; LRM, RLM
    (0x2028, 0x202E),  # line and paragraph separators; bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates, deprecated formats
    (0xD800, 0xDFFF),  # lone surrogates
    (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
    (0xFFF9, 0xFFFB),  # interlinear annotation
    (0xE0000, 0xE007F),  # tags
)
_HIDDEN = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _HIDDEN_RANGES) + "]")
# Control, format, line and paragraph separators, unassigned: not shown raw on one line.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _cached_when_short(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """`fn`, remembered for short texts (a payload's keys repeat, in lists of like objects);
    long ones are not kept, so a hostile payload cannot fill memory with them."""
    cached = functools.lru_cache(maxsize=4096)(fn)
    return lambda text: cached(text) if len(text) <= 200 else fn(text)


@_cached_when_short
def _squeeze(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def secret_key(key: object) -> bool:
    return _secret_key(str(key))


@_cached_when_short
def _secret_key(text: str) -> bool:
    if _SECRET_KEY.search(_squeeze(text)):
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
    name = match[2]
    in_query = match[1] in ("?", "&", ";")
    if secret_key(name) or (in_query and name.lower() in _SECRET_PARAMS):
        return f"{match[1]}{name}={MASK}"
    return match[0]


def mask_text(text: str) -> str:
    """A string with card numbers, URL logins, secret parameters (`password=…`, `?sig=…`),
    Authorization headers and bearer tokens, JWTs and PEM private keys masked."""
    if "-----BEGIN " in text:
        text = _PEM.sub(MASK, text)
    text = _CARD.sub(_mask_card, text)
    if "://" in text:
        text = _URL_LOGIN.sub(lambda m: f"{m[1]}{MASK}@", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    lowered = text.lower()
    if "authori" in lowered:
        text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2] or ''}{MASK}", text)
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: f"{m[1]}{MASK}", text)
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    return text


def _escaped(char: int) -> str:
    """A character as JSON writes it escaped (astral ones as their surrogate pair)."""
    if char > 0xFFFF:
        char -= 0x10000
        return f"\\u{0xD800 + (char >> 10):04x}\\u{0xDC00 + (char & 0x3FF):04x}"
    return f"\\u{char:04x}"


_REVEALED = {n: _escaped(n) for lo, hi in _HIDDEN_RANGES for n in range(lo, hi + 1)}


def reveal(text: str) -> str:
    """`text` with the characters that hide or reorder text shown as their escape (`\\u202e`).
    In JSON text this keeps the JSON valid and its meaning the same."""
    return text.translate(_REVEALED) if _HIDDEN.search(text) else text


def one_line_clean(text: str, limit: int = 200) -> str:
    """`text` on one line with nothing invisible: characters that hide or reorder text (RTL
    override, zero-width) are shown as their escape, as in the payload preview; other control
    characters and line breaks become spaces, so it cannot fake a line or hide its end."""
    text = text[: 2 * limit + 1000]  # what a long text's first `limit` characters come from
    shown = "".join(" " if unicodedata.category(c) in _INVISIBLE else c for c in reveal(text))
    return clip(shown.strip(), limit) or "?"


def code(text: str, limit: int = 200) -> str:
    """`text` as an inline code span (mrkdwn) it cannot leave: its own backticks become ˋ.
    Within `limit` + 2 characters after escaping."""
    return "`" + escaped(one_line_clean(text, limit).replace("`", "ˋ"), limit) + "`"


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_len(text: str) -> int:
    """`text`'s length as Slack's limits count it. Slack does not document how it counts a
    character beyond the BMP (most emoji): as two (UTF-16), the stricter count, is assumed."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def _head(text: str, units: int) -> str:
    """The longest start of `text` within `units` (as `slack_len` counts), never half a pair."""
    if text.isascii():
        return text[:units]
    spent = 0
    for i, char in enumerate(text):
        spent += 2 if ord(char) > 0xFFFF else 1
        if spent > units:
            return text[:i]
    return text


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters as Slack counts them, `…` where it was cut."""
    return text if slack_len(text) <= limit else _head(text, limit - 1) + "…"


def clip_mrkdwn(text: str, limit: int) -> str:
    """Escaped mrkdwn within `limit` characters as Slack counts them (measured after
    escaping), never cut inside an entity (`&amp;`) or inside our own markup (`<@U…>`,
    `<!date^…>`): in escaped text every `&` starts an entity and every `<` is ours."""
    if slack_len(text) <= limit:
        return text
    cut = _head(text, limit - 1)
    if (opened := cut.rfind("<")) > cut.rfind(">"):
        cut = cut[:opened]
    if (amp := cut.rfind("&")) >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def escaped(text: str, limit: int) -> str:
    """Untrusted text escaped for mrkdwn, then clipped to `limit` (an escape triples `&`)."""
    return clip_mrkdwn(escape(text[: limit + 1]), limit)


def inline(text: str, limit: int) -> str:
    """Untrusted text as escaped mrkdwn on one clean line, within `limit` after escaping."""
    return escaped(one_line_clean(text, limit), limit)


QUOTED_LINES = 20


def quoted(text: str, limit: int) -> str:
    """Untrusted text on lines of its own, each quoted (`>`), escaped, and clipped after
    escaping to `limit`: no line of it can pass for one of ours ("✅ Approved by …")."""
    lines = text[: limit + 1].splitlines() or [""]
    shown = [
        ">" + (f" {escape(one_line_clean(line, limit))}" if line.strip() else "")
        for line in lines[:QUOTED_LINES]
    ]
    if len(lines) > QUOTED_LINES:
        shown.append("> …")
    return clip_mrkdwn("\n".join(shown), limit)


def mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack must not auto-link channel names or URLs found in the text.
    return MarkdownTextObject(text=text, verbatim=True)


def mention(slack_id: str) -> str:
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def mask_secrets(
    value: Any,
    depth: int = MAX_DEPTH,
    paths: Collection[str] = (),
    *,
    limit: int | None = None,
    keep: Collection[str] = (),
) -> Any:
    """The payload with secrets masked and anything deeper than `depth` elided.

    Secrets: values under secret-looking keys, header lists (`[{"name": "Authorization",
    "value": …}]` in any case, `[["X-Api-Key", …]]`), what `mask_text` finds in strings, JSON
    written inside a string (masked within it), card numbers, and the dotted `paths` (lists
    are transparent: `items.iban` is every item's iban).

    `limit`: a bounded walk. It copies in document order and stops once about `limit`
    characters are spent (strings cut a little further, marked `…`; containers cut get a `…`
    item), so its cost follows what can be shown, not the payload's size. Beyond the limit it
    still copies the dotted `keep` paths (template fields), with list items by index up to the
    first item not kept."""
    return _Walk(paths, limit, keep).value(value, depth, "", "")


CUT_MARGIN = 256  # a string is cut this far past the limit, so what starts within it (a card
# number, a token, a URL login) is whole when masked
HEADER_SCAN = 200  # a dict with more keys is not scanned for a header name: treated as one
KEPT_CHARS = 400  # the budget of one `keep` value copied past the limit


class _Walk:
    def __init__(self, paths: Collection[str], limit: int | None, keep: Collection[str]) -> None:
        self.paths = paths
        self.left: float = math.inf if limit is None else limit + 1  # past it, something was cut
        self.leaves = frozenset(keep)
        self.wanted: dict[str, set[str]] = {}  # a path -> its children on the way to a kept one
        for path in keep:
            parts = path.split(".")
            for i, part in enumerate(parts):
                self.wanted.setdefault(".".join(parts[:i]), set()).add(part)

    def value(self, value: Any, depth: int, at: str, where: str) -> Any:
        """`at`: the path with lists transparent (for `paths`); `where`: with list indices."""
        if isinstance(value, dict | list) and depth <= 0:
            self.left -= 1
            return DEEP
        if isinstance(value, dict):
            return self._dict(value, depth, at, where)
        if isinstance(value, list):
            return self._list(value, depth, at, where)
        if isinstance(value, str):
            return self._string(value, depth)
        self.left -= 1
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
            return MASK if mask_text(str(abs(value))) == MASK else value
        return value

    def _dict(self, value: dict, depth: int, at: str, where: str) -> dict:
        self.left -= 2
        # A big dict is not scanned for a header name: its value keys are masked as a header's.
        secret_header = len(value) > HEADER_SCAN or any(
            isinstance(v, str) and _squeeze(str(k)) in _NAME_KEYS and secret_key(v)
            for k, v in value.items()
        )
        out: dict = {}
        items = iter(value.items())
        for k, v in items:
            if self.left <= 0:
                break
            out[k] = self._entry(k, v, depth, at, where, secret_header)
        else:
            return out
        for k in self.wanted.get(where, ()):  # the rest is cut, but for the paths kept
            if k in value and k not in out:
                out[k] = self._kept(k, value[k], depth, at, where, secret_header)
        out.setdefault(DEEP, DEEP)
        return out

    def _entry(self, k: Any, v: Any, depth: int, at: str, where: str, secret_header: bool) -> Any:
        path = f"{at}.{k}" if at else str(k)
        self.left -= len(str(k)) + 4
        if (
            secret_key(k)
            or path in self.paths
            or (secret_header and _squeeze(str(k)) in _VALUE_KEYS)
        ):
            return MASK
        return self.value(v, depth - 1, path, f"{where}.{k}" if where else str(k))

    def _kept(self, k: Any, v: Any, depth: int, at: str, where: str, secret_header: bool) -> Any:
        """A value on a kept path, past the limit: a kept leaf gets a small budget of its own."""
        leaf = (f"{where}.{k}" if where else str(k)) in self.leaves
        spent, self.left = self.left, (KEPT_CHARS if leaf else 0)
        try:
            return self._entry(k, v, depth, at, where, secret_header)
        finally:
            self.left = min(spent, 0)

    def _list(self, value: list, depth: int, at: str, where: str) -> list:
        self.left -= 2
        if len(value) == 2 and isinstance(value[0], str) and secret_key(value[0]):
            self.left -= len(value[0])
            return [value[0], MASK]
        wanted = self.wanted.get(where, ())
        out = []
        for i, v in enumerate(value):
            index = f"{where}.{i}" if where else str(i)
            if self.left > 0:
                out.append(self.value(v, depth - 1, at, index))
            elif str(i) in wanted:
                spent, self.left = self.left, (KEPT_CHARS if index in self.leaves else 0)
                out.append(self.value(v, depth - 1, at, index))
                self.left = min(spent, 0)
            else:
                out.append(DEEP)
                break
        return out

    def _string(self, text: str, depth: int) -> str:
        """A string masked; one that holds a JSON object or array is masked as JSON, within it
        (shown re-written only when something in it was masked, or cut)."""
        if depth > 1 and text.lstrip()[:1] in ("{", "["):
            try:
                inner = json.loads(text)
            except (ValueError, RecursionError):
                inner = None
            if isinstance(inner, dict | list):
                walk = _Walk((), None, ())
                walk.left = self.left
                masked = walk.value(inner, depth - 1, "", "")
                self.left = walk.left
                return text if masked == inner else json.dumps(masked, ensure_ascii=False)
        cut = len(text) > self.left + CUT_MARGIN
        if cut:
            text = text[: int(max(self.left, 0)) + CUT_MARGIN]
        self.left -= len(text) + 2
        return mask_text(text) + DEEP if cut else mask_text(text)


def pretty_payload(payload: Any, paths: Collection[str] = (), limit: int | None = None) -> str:
    """Masked pretty JSON; with `limit`, of a bounded walk (longer than `limit` when cut)."""
    masked = mask_secrets(payload, paths=paths, limit=limit)
    return reveal(json.dumps(masked, indent=2, ensure_ascii=False, default=str))


def preview(
    payload: Any, limit: int = PREVIEW_CHARS, paths: Collection[str] = (), masked: bool = False
) -> tuple[str, bool]:
    """Pretty, masked JSON cut to `limit` characters; the flag says whether it was cut.
    `masked`: the payload already went through `mask_secrets` (not masked twice)."""
    if masked:
        text = reveal(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    else:
        text = pretty_payload(payload, paths, limit)
    if slack_len(text) <= limit:
        return text, False
    return clip(text, limit), True


def one_line(payload: Any, limit: int = 120, paths: Collection[str] = ()) -> str:
    masked = mask_secrets(payload, paths=paths, limit=limit)
    return clip(reveal(json.dumps(masked, ensure_ascii=False, default=str)), limit)


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
