"""Storage (SQLModel on SQLite or PostgreSQL): one module per table, over one `Database`.

`Store` bundles them for the rest of the service: `store.approvals`, `store.outbox`, `store.votes`,
`store.pace`, `store.homes`.
"""

from __future__ import annotations

from app.db.approvals import Approvals
from app.db.engine import Database
from app.db.homes import HomeTabs
from app.db.outbox import OutboxTasks
from app.db.pace import ChannelPace
from app.db.votes import Votes


class Store(Database):
    def __init__(self, url: str, statement_timeout_ms: int | None = None) -> None:
        super().__init__(url, statement_timeout_ms)
        self.approvals = Approvals(self)
        self.outbox = OutboxTasks(self)
        self.votes = Votes(self)
        self.pace = ChannelPace(self)
        self.homes = HomeTabs(self)
