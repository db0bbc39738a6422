"""Reading a job's payload by dotted path (`beneficiary.name`, `items.0.sku`). Pure."""

from __future__ import annotations

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
