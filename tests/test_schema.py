"""Alembic migrations: upgrade from empty, agreement with the models, and start-up checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from app import schema
from app.db import Store


def run(coro):
    return asyncio.run(coro)


async def _diff(url: str) -> list:
    store = Store(url)
    try:
        await schema.upgrade(store)
        async with store.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), SQLModel.metadata)
            )
    finally:
        await store.close()


async def _revision(url: str) -> str | None:
    store = Store(url)
    try:
        return await schema.current(store)
    finally:
        await store.close()


def test_upgrade_from_empty_matches_the_models(database_url):
    assert run(_revision(database_url)) is None
    assert run(_diff(database_url)) == []
    assert run(_revision(database_url)) == schema.head()
    # Upgrading again is a no-op.
    assert run(_diff(database_url)) == []


def cli(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _downgrade_to(url: str, revision: str) -> None:
    store = Store(url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(schema._config(sync), revision))
    finally:
        await store.close()


def test_serve_refuses_an_outdated_schema_and_migrate_says_what_it_did(
    tmp_path, service_env_for, database_url
):
    env = service_env_for(tmp_path)
    where = env["DATABASE_URL"].replace(":postgres@", "@")  # shown without its password
    serve = cli("serve", "--port", "9", env=env, cwd=tmp_path)
    assert serve.returncode == 2
    if database_url.startswith("sqlite"):
        # A path with no file is said to be one, and no empty file is left behind.
        path = database_url.removeprefix("sqlite+aiosqlite:///")
        assert f"no SQLite file at {path}: fix the path, or run `rotor-slack migrate`" in (
            serve.stderr
        )
        assert not (tmp_path / "rotor-slack.db").exists()
        assert cli("audit", env=env, cwd=tmp_path).returncode == 2
        assert not (tmp_path / "rotor-slack.db").exists()
    else:
        assert f"the database schema is empty, this version needs {schema.head()}" in serve.stderr
        assert "rotor-slack migrate" in serve.stderr
    migrate = cli("migrate", env=env, cwd=tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout == f"{where}: created the database schema at revision {schema.head()}\n"
    assert run(_revision(env["DATABASE_URL"])) == schema.head()
    again = cli("migrate", env=env, cwd=tmp_path)
    assert again.stdout == (
        f"{where}: the database schema is at revision {schema.head()} already: nothing to do\n"
    )
    run(_downgrade_to(env["DATABASE_URL"], "0004"))  # an older schema than this release's
    upgraded = cli("migrate", env=env, cwd=tmp_path)
    assert upgraded.stdout == (
        f"{where}: upgraded the database schema from revision 0004 to {schema.head()}\n"
    )


async def _upgrade_with_data(url: str) -> tuple:
    store = Store(url)
    try:
        await schema.upgrade(store, "0001")
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO approvals (id, job_id, queue_name, payload, created_at, status,"
                    " reminders_sent) VALUES ('apv_1', 'job_1', 'payments', '{\"amount\": 5}',"
                    " CURRENT_TIMESTAMP, 'pending', 0)"
                )
            )
        await schema.upgrade(store)
        rows = [await store.approvals.get(i) for i in await store.approvals.pending_ids(None, 10)]
        voters = await store.votes.voters("apv_1")
        return [(a.id, a.payload, a.status, a.requester) for a in rows], voters
    finally:
        await store.close()


def test_upgrade_from_the_first_release_keeps_pending_approvals(database_url):
    rows, voters = run(_upgrade_with_data(database_url))
    assert rows == [("apv_1", {"amount": 5}, "pending", None)]
    assert voters == []
    assert run(_revision(database_url)) == schema.head()
