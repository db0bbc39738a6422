"""The home_tabs table: who opened the Home tab lately, and a digest of what they were last shown.

Publishing is claimed by swapping the digest in one conditional update, so when replicas
refresh the same person's tab at once, one of them publishes and the others see nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from app.db.engine import Database
from app.db.models import HomeTab, table_of

_HOMES = table_of(HomeTab)
_INSERT: dict[str, Callable[[Table], Any]] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


class HomeTabs:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert = _INSERT[db.engine.dialect.name]

    async def opened(self, user: str, at: datetime) -> str | None:
        """Note that `user` looks at their Home tab; returns the digest last published there."""
        statement = self._insert(_HOMES).values(user=user, opened_at=at, published=None)
        statement = statement.on_conflict_do_update(index_elements=["user"], set_={"opened_at": at})
        async with self._db.session() as s:
            await s.exec(statement)
            tab = await s.get(HomeTab, user)
            return tab.published if tab else None

    async def recent(self, since: datetime) -> list[HomeTab]:
        async with self._db.session() as s:
            rows = await s.exec(select(HomeTab).where(col(HomeTab.opened_at) >= since))
            return list(rows.all())

    async def claim(self, user: str, shown: str | None, new: str) -> bool:
        """Swap the digest from `shown` to `new`; False when someone else changed it first."""
        was = _HOMES.c.published.is_(None) if shown is None else _HOMES.c.published == shown
        statement = update(_HOMES).where(_HOMES.c.user == user, was).values(published=new)
        async with self._db.session() as s:
            return (await s.exec(statement)).rowcount == 1

    async def unclaim(self, user: str, digest: str) -> None:
        """The publish failed: let the next refresh try again."""
        statement = (
            update(_HOMES)
            .where(_HOMES.c.user == user, _HOMES.c.published == digest)
            .values(published=None)
        )
        async with self._db.session() as s:
            await s.exec(statement)
