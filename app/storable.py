"""What this service can hold of what comes from outside: JSON read within bounds, and text the
database stores. Pure.

Python's json fails a whole document for one bad value inside it: nesting past the recursion
limit raises RecursionError, an integer over 4,300 digits ValueError (the int-str conversion
limit), and `1e400`, `NaN` or `Infinity` become floats no JSON column stores (PostgreSQL refuses
them). `loads` reads such a document whole with each bad value replaced by an `Unreadable` marker,
so a caller can set aside what holds one and keep the rest: one item of a Rotor page, not the page.

Nesting is bounded before parsing. A text with at most `MAX_DEPTH` opening brackets cannot nest
deeper, and json reads it as it is (the usual case: two counts in C, no scan), integers natively
(over 4,300 digits it raises, and the careful reading below makes the marker). Any other text, or
one json refuses, is read carefully: a scan of the text (a regex steps over whole strings, so
brackets inside them do not count) cuts out each container opened deeper than `MAX_DEPTH` and
writes `NaN` in its place, which the parser's hook turns into a marker. `NaN` is not JSON, so a
literal one in the text is first rewritten as `-Infinity` (reported as out of range): a `NaN`
that reaches the parser is always a cut.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

MAX_DEPTH = 256  # levels of a document: no real payload needs more
MAX_DIGITS = 4300  # Python's default int-str conversion limit
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"
TOO_LONG = f"an integer over {MAX_DIGITS} digits"
OUT_OF_RANGE = "a number out of range (1e400, NaN, Infinity)"

# A whole string (escapes included); then, outside strings, a bracket or a literal NaN.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKENS = re.compile(rf"{_STRING}|[\[\]{{}}]|NaN")
_STRINGS = re.compile(_STRING)
_NOT_BRACKETS = re.compile(r"[^\[\]{}N]+")  # keeps brackets, and the N of a literal NaN
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1, "N": 0}


class Unreadable:
    """Stands where `loads` met a value it cannot hold; `why` says what it was (never the value)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"Unreadable({self.why!r})"


class NotJSON(ValueError):
    """The text is not a JSON document."""


class TooDeep(NotJSON):
    """It opens containers deeper than MAX_DEPTH and never closes them."""


def loads(text: str | bytes) -> Any:
    """The document, with `Unreadable` markers for values it cannot hold; NotJSON if it is none."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")  # a BOM is tolerated, as json.loads(bytes) does
        if text.count("[") + text.count("{") <= MAX_DEPTH:
            try:
                return json.loads(text, parse_float=_float, parse_constant=_out_of_range)
            except ValueError:
                pass  # a long integer, or not JSON: the careful reading says which
        return json.loads(
            _cut_deep(text),
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except RecursionError:  # the scan bounds depth; this is only a backstop
        raise TooDeep(TOO_DEEP) from None
    except NotJSON:
        raise
    except ValueError:  # also UnicodeDecodeError
        raise NotJSON("not JSON") from None


def unreadable_in(document: Any) -> str | None:
    """Why the first marker in `document` stands there, or None (iterative: no recursion)."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, Unreadable):
            return value.why
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def depth(document: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON document (iterative: no recursion)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, level + 1) for child in children)
    return deepest


def _cut_deep(text: str) -> str:
    bare = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))  # brackets and NaN's N, in C loops
    if "N" not in bare and max(accumulate(map(_STEP.__getitem__, bare)), default=0) <= MAX_DEPTH:
        return text  # the usual case
    pieces, last, level, start = [], 0, 0, None
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "NaN":
            if start is None:
                pieces += [text[last : match.start()], "-Infinity"]
                last = match.end()
        elif token in ("[", "{"):
            level += 1
            if level == MAX_DEPTH + 1:
                start = match.start()
        elif token in ("]", "}"):
            if level == MAX_DEPTH + 1 and start is not None:
                pieces += [text[last:start], "NaN"]
                last, start = match.end(), None
            level -= 1
    if start is not None:  # opened deeper than the bound and never closed
        raise TooDeep(TOO_DEEP)
    pieces.append(text[last:])
    return "".join(pieces)


def _int(text: str) -> int | Unreadable:
    return Unreadable(TOO_LONG) if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def _float(text: str) -> float | Unreadable:
    value = float(text)
    return value if math.isfinite(value) else Unreadable(OUT_OF_RANGE)


def _constant(name: str) -> Unreadable:
    return Unreadable(TOO_DEEP if name == "NaN" else OUT_OF_RANGE)


def _out_of_range(_name: str) -> Unreadable:
    return Unreadable(OUT_OF_RANGE)  # a literal NaN or Infinity, where nothing was cut


# --- text ------------------------------------------------------------------------------------


def storable_text(value: str) -> str:
    """Text a database column takes: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if "\x00" in value:
        raise ValueError("holds a NUL character, which the database cannot store")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("holds a lone surrogate, which is not text") from None
    return value


def cleaned_text(value: Any) -> Any:
    """Free text (a reason) made storable: NUL and lone surrogates become U+FFFD."""
    if not isinstance(value, str):
        return value
    text = value.replace("\x00", "\ufffd")
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


# An identifier from outside (a job id, a queue name): refused when the database cannot store it.
Text = Annotated[str, AfterValidator(storable_text)]
# Free text from outside: stored with what the database cannot hold replaced.
CleanText = Annotated[str, BeforeValidator(cleaned_text)]
