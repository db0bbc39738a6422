"""The database connection: engine (with SQLite's tuning) and transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import URL, event, make_url
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import DatabaseUnavailable

SQLITE_BUSY_SECONDS = 5
IDLE_IN_TRANSACTION_MS = 10_000

# What a stopped, unreachable, locked or read-only database raises (not a constraint or a bug).
_UNAVAILABLE = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, OSError)
# PostgreSQL's classes for the same, whatever exception class the driver maps them to: connection
# exception (08), insufficient resources (53), operator intervention (57: shutting down, "the
# database system is starting up").
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")


class Database:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on leaving; an outage is `DatabaseUnavailable`."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except (*_UNAVAILABLE, sa.DBAPIError) as e:
            if not is_outage(e):
                raise
            raise DatabaseUnavailable(describe(e)) from e

    async def ping(self) -> None:
        async with self.session() as s:
            await s.exec(select(1))


def is_outage(error: BaseException) -> bool:
    """SQLite says OperationalError for a schema mistake too ("no such table"): that is a bug
    to see, not an outage to wait out."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    if sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    if not isinstance(error, _UNAVAILABLE):
        return bool(getattr(error, "connection_invalidated", False))
    return not (isinstance(error, sa.OperationalError) and "no such " in str(error.orig))


def ssl_mode(url: str) -> tuple[URL, str | None]:
    """libpq's `?sslmode=` (what managed PostgreSQL hands out) as asyncpg's `ssl` argument."""
    parsed = make_url(url)
    mode = parsed.query.get("sslmode")
    if mode is None:
        return parsed, None
    return parsed.difference_update_query(["sslmode"]), str(mode)


def describe(error: BaseException) -> str:
    """One line, without the SQL and parameters SQLAlchemy appends."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"[:300]


def create_engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        # A replica frozen inside a transaction (a long pause, a stopped VM) must not hold its
        # row locks over the others for ever: the server ends such a transaction after 10 s.
        settings = {"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS)}
        parsed, ssl = ssl_mode(url)
        return create_async_engine(
            parsed,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            connect_args={"server_settings": settings} | ({"ssl": ssl} if ssl else {}),
        )
    # One connection: SQLite has one writer anyway, and waiting for the pool is an asyncio
    # wait, where waiting for the file lock is the busy handler sleeping in steps of up to 100 ms.
    # A file locked by another process for longer than these is an outage (webhooks get 503,
    # Rotor retries), not a hang: waits are bounded by the busy timeout and the pool's.
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_SECONDS},
        pool_size=1,
        max_overflow=0,
        pool_timeout=2 * SQLITE_BUSY_SECONDS,
    )

    # SQLite: WAL for concurrent readers, and BEGIN IMMEDIATE so a transaction that will write
    # waits for the lock instead of failing with "database is locked" when it upgrades.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Durable across a crash of the process; an OS crash may lose the last commits, which
        # the sync worker recovers from Rotor. Saves an fsync on every commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
