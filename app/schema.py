"""The database schema's version: Alembic migrations shipped in the package."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from app.config import ConfigError
from app.db import Store

# Any constant: replicas starting together with --migrate take turns on it.
_MIGRATION_LOCK = 7_265_417


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("app") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def current(store: Store) -> str | None:
    async with store.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(store: Store) -> None:
    async with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), "head"))


async def require_current(store: Store) -> None:
    found, wanted = await current(store), head()
    if found != wanted:
        state = f"at revision {found}" if found else "empty"
        raise ConfigError(
            f"DATABASE_URL: the database schema is {state}, this version needs {wanted}: "
            "run `rotor-slack migrate` (or start with `serve --migrate`)"
        )
