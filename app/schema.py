"""The database schema's version (Alembic migrations shipped in the package), and what to tell
the operator when the database cannot be used."""

from __future__ import annotations

import sqlite3
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

from app.config import ConfigError, without_password
from app.db import Store

# Any constant: replicas starting together with --migrate take turns on it.
_MIGRATION_LOCK = 7_265_417


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("app") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations have a head"
    return head


async def current(store: Store) -> str | None:
    async with store.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(store: Store, revision: str = "head") -> None:
    async with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def require_current(store: Store) -> None:
    found, wanted = await current(store), head()
    if found != wanted:
        state = f"at revision {found}" if found else "empty"
        raise ConfigError(
            f"DATABASE_URL: the database schema is {state}, this version needs {wanted}: "
            "run `rotor-slack migrate` (or start with `serve --migrate`)"
        )


async def prepare(database_url: str, *, migrate: bool, setting: str = "DATABASE_URL") -> str | None:
    """Upgrade the schema (with `migrate`), or insist that it is current; any failure to reach
    or open the database becomes one line naming the URL (without its password) and the fix.
    Returns the revision the database was at before (None: empty)."""
    try:
        make_url(database_url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{setting} ({without_password(database_url)}): not a database URL: write it like "
            "postgresql+asyncpg://user:password@host:5432/database"
        ) from None
    _open_sqlite_file(database_url, setting, create=migrate)
    store = Store(database_url)
    try:
        found = await current(store)
        if migrate:
            await upgrade(store)
        await require_current(store)
        return found
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(explain(database_url, e, setting)) from None
    finally:
        await store.close()


def _open_sqlite_file(database_url: str, setting: str, create: bool) -> None:
    """Open an SQLite file once directly: when aiosqlite fails to open one, its worker thread
    outlives the event loop and prints a traceback of its own after our line. Only a migration
    creates the file: elsewhere a mistyped path must not leave an empty database behind."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not create and not Path(url.database).exists():
        raise ConfigError(
            f"{setting} ({without_password(database_url)}): no SQLite file at {url.database}: "
            "fix the path, or run `rotor-slack migrate` to create it"
        )
    try:
        sqlite3.connect(url.database).close()
    except sqlite3.Error as e:
        raise ConfigError(explain(database_url, e, setting)) from None


def explain(database_url: str, error: BaseException, setting: str = "DATABASE_URL") -> str:
    """A failure to use the database, in one line with the fix, in a deployer's words."""
    url = make_url(database_url)
    where = f"{setting} ({without_password(database_url)})"
    cause = getattr(error, "orig", None) or error
    cause = getattr(cause, "__cause__", None) or cause  # SQLAlchemy's asyncpg adapter wraps once
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    state = getattr(cause, "sqlstate", None)
    if state == "3D000":
        fix = f"create it (`createdb {url.database}`) or fix the database name"
    elif state == "28000" and "role" in text:
        fix = f"create the role (`createuser --pwprompt {url.username}`) or fix the user"
    elif state == "28P01":
        fix = "fix the user or password"
    elif state is not None and state.startswith("28"):
        fix = "check the user and password, and that the server lets this host log in"
    elif "SSL" in text:
        fix = "use sslmode=prefer or disable for a server without SSL, or turn SSL on there"
    elif isinstance(cause, OSError):  # refused, unknown host, timed out
        reason = "no answer in time" if isinstance(cause, TimeoutError) else cause.strerror
        text = f"cannot reach the database server: {reason or text}"
        fix = "start PostgreSQL, or fix the host and port"
    elif url.get_backend_name() == "sqlite":
        path = url.database or ":memory:"
        if "unable to open" in text:
            text = f"cannot open the SQLite file {path}"
            fix = f"create its directory and make it writable, or point {setting} elsewhere"
        elif "readonly" in text:
            text = f"the SQLite file {path} is read-only"
            fix = "make the file and its directory writable"
        elif "not a database" in text:
            text = f"{path} is not an SQLite database"
            fix = f"point {setting} at a new file or at rotor-slack's database"
        else:
            fix = f"check the file and {setting}"
    else:
        fix = f"check {setting} and the database server"
    if url.password:  # should a driver ever echo the URL
        text = text.replace(f":{url.password}@", "@")
    return f"{where}: {text}: {fix}"
