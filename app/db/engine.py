"""The database connection: engine (with SQLite's tuning) and transactions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import URL, event, make_url, text
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import DatabaseRefused, DatabaseUnavailable

SQLITE_BUSY_SECONDS = 5
IDLE_IN_TRANSACTION_MS = 10_000
# The service's statements are small: one running longer waits on a lock (a paused replica's,
# or one taken by hand); its timeout is the cue to end a paused replica's session.
STATEMENT_TIMEOUT_MS = 10_000
APPLICATION_NAME = "rotor-slack"  # how PostgreSQL names this service's sessions

log = logging.getLogger(__name__)

# This service's sessions (any replica's) stopped in the middle of a statement inside a
# transaction for over 10 s: a replica paused between asyncpg's prepare and execute. The server
# waits on its next message for ever (neither idle_in_transaction_session_timeout nor a
# statement_timeout ends that wait) and the locks it holds stall every other replica.
_END_STALLED = text(
    """
WITH stalled AS MATERIALIZED (
  SELECT pid FROM pg_stat_activity
  WHERE datname = current_database() AND application_name = :name AND pid <> pg_backend_pid()
    AND state = 'active' AND wait_event = 'ClientRead' AND xact_start IS NOT NULL
    AND state_change < now() - make_interval(secs => :after)
)
SELECT pid FROM stalled WHERE pg_terminate_backend(pid)
"""
)

# What a stopped, unreachable, locked or read-only database raises (not a constraint or a bug).
_UNAVAILABLE = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, OSError)
# PostgreSQL's classes for the same, whatever exception class the driver maps them to: connection
# exception (08), insufficient resources (53), operator intervention (57: shutting down, "the
# database system is starting up").
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")
# Data exception (22): a value the database will not take (NUL, malformed JSON, an encoding).
_REFUSED_SQLSTATE = "22"


class Database:
    def __init__(self, url: str, statement_timeout_ms: int | None = None) -> None:
        """`statement_timeout_ms`: PostgreSQL cancels a statement running longer (None: never)."""
        self.engine: AsyncEngine = create_engine(url, statement_timeout_ms)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on leaving; an outage is `DatabaseUnavailable`,
        a value the database refuses `DatabaseRefused`: their text never carries a value."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except (*_UNAVAILABLE, sa.StatementError, UnicodeEncodeError) as e:
            if is_refusal(e):
                # `from None`: the driver's own message may quote the value (asyncpg does).
                raise DatabaseRefused(refusal(e)) from None
            if is_outage(e):
                if _sqlstate(e) == "57014":  # a statement timed out: on a stalled replica's lock?
                    await self._end_stalled_sessions()
                raise DatabaseUnavailable(describe(e)) from e
            raise without_values(e) from None

    async def _end_stalled_sessions(self) -> None:
        """End this service's sessions that stopped in the middle of a statement (best effort:
        this runs because something is wrong already)."""
        try:
            async with self.engine.connect() as conn:
                params = {"name": APPLICATION_NAME, "after": IDLE_IN_TRANSACTION_MS / 1000}
                ended = (await conn.execute(_END_STALLED, params)).scalars().all()
        except Exception:
            return
        for pid in ended:
            log.warning(
                "database: ended session %s, stopped in the middle of a statement for over "
                "10 s (a paused replica): its locks held the others up",
                pid,
            )

    async def ping(self) -> None:
        async with self.session() as s:
            await s.exec(select(1))


def _sqlstate(error: BaseException) -> str:
    return getattr(getattr(error, "orig", None), "sqlstate", None) or ""


def is_outage(error: BaseException) -> bool:
    """SQLite says OperationalError for a schema mistake too ("no such table"): that is a bug
    to see, not an outage to wait out."""
    sqlstate = _sqlstate(error)
    if sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    if not isinstance(error, _UNAVAILABLE):
        return bool(getattr(error, "connection_invalidated", False))
    return not (isinstance(error, sa.OperationalError) and "no such " in str(error.orig))


def is_refusal(error: BaseException) -> bool:
    """A value the database (or the driver, or SQLAlchemy binding it) will not take."""
    if isinstance(error, sa.DataError | UnicodeEncodeError):  # sqlite3: a lone surrogate
        return True
    if isinstance(error, sa.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return sqlstate.startswith(_REFUSED_SQLSTATE)
    # Not from the driver: a bind processor failed (a value JSON cannot write).
    return isinstance(error, sa.StatementError) and isinstance(error.orig, ValueError | TypeError)


def refusal(error: BaseException) -> str:
    """What was refused, without the value: the exception class and SQLSTATE only."""
    cause = getattr(error, "orig", None) or error
    sqlstate = getattr(cause, "sqlstate", None)
    return f"the database refused a value ({type(cause).__name__}" + (
        f", SQLSTATE {sqlstate})" if sqlstate else ")"
    )


def without_values(error: BaseException) -> BaseException:
    """The same error (callers catch IntegrityError) with its text cut to the first line:
    PostgreSQL's DETAIL quotes row values ("Failing row contains (…)"); `from None` at the
    raise drops the driver's exceptions chained below it, which quote them too."""
    if isinstance(error, sa.StatementError) and error.args and isinstance(error.args[0], str):
        error.args = (error.args[0].split("\n", 1)[0],)
    return error


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


def create_engine(url: str, statement_timeout_ms: int | None = None) -> AsyncEngine:
    if not url.startswith("sqlite"):
        # A replica frozen inside a transaction (a long pause, a stopped VM) must not hold its
        # row locks over the others for ever: the server ends such a transaction after 10 s;
        # one stopped in the middle of a statement, the other replicas end (_END_STALLED).
        settings = {
            "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
            "application_name": APPLICATION_NAME,
        }
        if statement_timeout_ms is not None:
            settings["statement_timeout"] = str(statement_timeout_ms)
        parsed, ssl = ssl_mode(url)
        return create_async_engine(
            parsed,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            # Errors quote no parameters: they carry payload values (a key, a card number).
            hide_parameters=True,
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
        hide_parameters=True,
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
