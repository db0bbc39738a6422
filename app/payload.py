"""Reading a job's payload by dotted path (`beneficiary.name`, `items.0.sku`), and telling
whether a value someone typed is the one there. Pure."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

MISSING = object()


def at_path(payload: Any, path: str) -> Any:
    """The value at `path`, or MISSING; list items by index."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


_GROUPING = re.compile(r"[\s,_'\u00a0\u202f]")  # 48,500 · 48 500 · 48_500 · 48'500


TEXT_MAX = 3000  # a Slack text input holds this much: longer values cannot be edited there


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def editable_value(value: object) -> bool:
    """Text and numbers can be corrected in a form; objects, lists and booleans cannot."""
    if isinstance(value, str):
        return len(value) <= TEXT_MAX
    return value is MISSING or value is None or is_number(value)


def parse_number(text: str) -> Decimal | None:
    """A number as a person types it (`48,500.00`, `48 500`), or None."""
    return _number(text)


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str) and len(value) <= 100:
        text = _GROUPING.sub("", value.strip())
    else:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def typed_matches(typed: str, expected: object) -> bool:
    """Whether `typed` is `expected`: numbers as numbers (`48,500` and `48500.00` are 48500),
    text ignoring case and surrounding or repeated spaces. A missing value matches nothing."""
    if expected is MISSING or expected is None or isinstance(expected, dict | list):
        return False
    want = _number(expected)
    if want is not None:
        return _number(typed) == want
    words = " ".join(typed.split()).casefold()
    return bool(words) and words == " ".join(str(expected).split()).casefold()
