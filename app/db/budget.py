"""The rotor_budget table: this deployment's share of Rotor's per-workspace rate limit, shared by
every replica (a generic cell rate algorithm on one row, on the database's clock).

Rotor allows `requests_per_minute` per workspace (Free 60, Pro 300, Team 1,000). Calls are
spaced one `interval` apart on average; people (a click's decision) may also spend a small
reserve at once, and book the next slot when it is gone, while background work (poll, sync,
expiry, decision events) only ever takes a slot that is free now, so it never stands in front of
a click. The steady rate leaves room for the reserve, so that no 60-second window, however
placed, holds more than `requests_per_minute` calls (a 429 pushes every slot past its
Retry-After as well).
"""

from __future__ import annotations

from sqlalchemy import text

from app.db.engine import Database
from app.db.pace import NOW, SECONDS

ROW = "rotor"

# Book the next slot whatever it is; seconds until it may be used (<= 0: go now).
_BOOK = """
INSERT INTO rotor_budget AS b (name, next_at) VALUES (:name, {now} + {interval})
ON CONFLICT (name) DO UPDATE SET next_at = {latest}(b.next_at, {now}) + {interval}
RETURNING next_at - {interval} - {reserve} - {now}
"""
# Take a slot only if it is free now; no row back when it is not.
_TAKE_FREE = """
INSERT INTO rotor_budget AS b (name, next_at) VALUES (:name, {now} + {interval})
ON CONFLICT (name) DO UPDATE SET next_at = {latest}(b.next_at, {now}) + {interval}
WHERE b.next_at <= {now}
RETURNING 0
"""
_FREE_IN = "SELECT next_at - {now} FROM rotor_budget WHERE name = :name"
# Nothing before `seconds` from now (Rotor's Retry-After).
_PUSH = """
INSERT INTO rotor_budget AS b (name, next_at) VALUES (:name, {now} + {ahead})
ON CONFLICT (name) DO UPDATE SET next_at = {latest}(b.next_at, {now} + {ahead})
"""


def shape(per_minute: int) -> tuple[float, float]:
    """(interval between calls, people's reserve) in seconds for a rate limit per minute."""
    reserve = max(1, per_minute // 10)
    steady = per_minute - reserve - 1  # + the reserve + the first call: per_minute a minute
    interval = 60.0 / steady
    return interval, reserve * interval


class RotorBudget:
    def __init__(self, db: Database, per_minute: int) -> None:
        self._db = db
        self.interval, self.reserve = shape(per_minute)
        dialect = db.engine.dialect.name
        words = {
            "now": NOW[dialect],
            "latest": "greatest" if dialect == "postgresql" else "max",
            "interval": SECONDS.format("interval"),
            "reserve": SECONDS.format("reserve"),
            "ahead": SECONDS.format("ahead"),
        }
        self._book, self._take_free, self._free_in, self._push = (
            text(sql.format(**words)) for sql in (_BOOK, _TAKE_FREE, _FREE_IN, _PUSH)
        )

    async def book(self) -> float:
        """People: take the next slot; seconds to wait for it (<= 0: go now)."""
        params = {"interval": self.interval, "reserve": self.reserve}
        async with self._db.session() as s:
            conn = await s.connection()
            return float((await conn.execute(self._book, {"name": ROW} | params)).scalar_one())

    async def take_free(self) -> float | None:
        """Background: None when a slot was taken; else seconds until one may be free."""
        async with self._db.session() as s:
            conn = await s.connection()
            params = {"name": ROW, "interval": self.interval}
            if (await conn.execute(self._take_free, params)).first() is not None:
                return None
            free_in = (await conn.execute(self._free_in, {"name": ROW})).scalar()
            return max(float(free_in or 0.0), 0.001)

    async def push(self, seconds: float) -> None:
        """No call before `seconds` from now (Rotor answered 429 with this Retry-After)."""
        async with self._db.session() as s:
            conn = await s.connection()
            await conn.execute(self._push, {"name": ROW, "ahead": seconds})
