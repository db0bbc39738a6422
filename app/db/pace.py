"""The channel_pace table: each channel's next post slot, claimed by one statement.

Every replica claims the slot `max(next_at, now)` and moves `next_at` one interval past it in
the same upsert, so N replicas post to a channel exactly as fast as one. Time is the
database's clock (seconds since the epoch), so replicas' clocks need not agree.
"""

from __future__ import annotations

from sqlalchemy import text

from app.db.engine import Database

NOW = {
    "postgresql": "extract(epoch from now())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_LATEST = {"postgresql": "greatest", "sqlite": "max"}

# :later is how far past the slot next_at moves (the interval; 0 to only push it).
_CLAIM = """
INSERT INTO channel_pace AS p (channel, next_at) VALUES (:channel, {now} + {ahead} + {later})
ON CONFLICT (channel) DO UPDATE SET next_at = {latest}(p.next_at, {now} + {ahead}) + {later}
RETURNING next_at - {later} - {now}
"""
SECONDS = "CAST(:{} AS double precision)"  # asyncpg wants the parameters' type


class ChannelPace:
    def __init__(self, db: Database) -> None:
        self._db = db
        dialect = db.engine.dialect.name
        self._claim = text(
            _CLAIM.format(
                now=NOW[dialect],
                latest=_LATEST[dialect],
                ahead=SECONDS.format("ahead"),
                later=SECONDS.format("later"),
            )
        )

    async def claim(self, channel: str, interval: float) -> float:
        """Take the channel's next slot; seconds to wait for it (<= 0: go now)."""
        return await self._upsert(channel, 0.0, interval)

    async def push(self, channel: str, seconds: float) -> None:
        """No post to the channel before `seconds` from now (Slack's Retry-After)."""
        await self._upsert(channel, seconds, 0.0)

    async def _upsert(self, channel: str, ahead: float, later: float) -> float:
        async with self._db.session() as s:
            conn = await s.connection()
            result = await conn.execute(
                self._claim, {"channel": channel, "ahead": ahead, "later": later}
            )
            return float(result.scalar_one())
