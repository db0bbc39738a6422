"""Approvals read with their payloads parsed off the event loop: a payload is JSON of any size
(a megabyte each), and parsing forty of them on the loop holds up every click's ack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, cast
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from app.db.models import Approval


def approvals_query() -> Any:
    """`select(Approval)` with the payload read as text beside each row, unparsed."""
    return select(Approval, cast(col(Approval.payload), Text)).options(defer(Approval.payload))


async def parsed(rows: Sequence[Any]) -> list[Approval]:
    """The approvals of `approvals_query` rows, their payloads parsed in a worker thread."""
    payloads = await asyncio.to_thread(lambda: [_loads(text) for _, text in rows])
    for (approval, _), payload in zip(rows, payloads, strict=True):
        set_committed_value(approval, "payload", payload)
    return [approval for approval, _ in rows]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
