"""A bad day: the database goes away under a running service, and comes back.

A private PostgreSQL cluster in a temp dir is stopped and started under the service; an SQLite
file is locked by another process. Nothing is lost, nothing doubled, and the logs say it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa
from sqlalchemy import text

from app.db.engine import Database
from app.errors import DatabaseUnavailable
from app.sandbox.rotor import sign_webhook
from app.sandbox.stack import ServiceProcess, free_port, service_env
from tests.conftest import CAROL, PG_URL, make_policy, posted, wait_until
from tests.preloaded import Forked
from tests.test_decisions import decided, notices
from tests.test_home import home, listed, texts

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
QUEUES = '\n[[queues]]\nname = "ops"\nchannel = "C0OPS"\n'


class Cluster:
    """A PostgreSQL server of the test's own, so it can be stopped (as `postgres` when root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rotor-slack-pg-"))
        self.data, self.port = self.root / "data", free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        os.chmod(self.root, 0o755)
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        command = [f"{PG_BINS[-1]}/{tool}", *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.data / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def claimed_by(self, approval_id: str) -> str | None:
        async def query():
            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
            try:
                sql = "SELECT claimed_by FROM approvals WHERE id = $1"
                return await conn.fetchval(sql, approval_id)
            finally:
                await conn.close()

        return asyncio.run(query())

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster():
    if not PG_BINS:
        pytest.skip("PostgreSQL's server programs are not installed (/usr/lib/postgresql/*/bin)")
    made = Cluster()
    made.start()
    yield made
    made.remove()


def serve(keys, slack, rotor, tmp_path, database_url) -> ServiceProcess:
    policy = tmp_path / "policy.toml"
    policy.write_text(make_policy(check_every="1s", sync_every="1h", queues=QUEUES))
    service = ServiceProcess(
        service_env(keys, slack, rotor, database_url, policy), tmp_path, launch=Forked
    )
    service.wait_ready(30)
    slack.app_url = f"{service.url}/slack/events"
    rotor.webhook_url = f"{service.url}/rotor/webhook"
    return service


def test_postgres_stopped_and_started_under_the_service(cluster, keys, slack, rotor, tmp_path):
    service = serve(keys, slack, rotor, tmp_path, cluster.url)
    try:
        decided_first = rotor.enqueue("ops", {"n": 1})
        clicked_later = rotor.enqueue("ops", {"n": 2})
        first = posted(slack, decided_first["id"])
        later = posted(slack, clicked_later["id"])
        slack.open_home(CAROL)
        home(slack, CAROL, "2 approvals wait on you")

        # A click whose Rotor call is under way when the database goes away.
        rotor.latency = 2.0
        slack.click(CAROL, first, "approve")
        wait_until(lambda: cluster.claimed_by(decided_first["id"]), what="the decision claimed")
        cluster.stop()

        wait_until(lambda: service.get("/readyz").status_code == 503, what="readyz 503")
        missed = rotor.create("ops", {"n": 3})
        answer = rotor.deliver(missed["id"])
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
        rotor.latency = 0
        started = time.monotonic()
        assert slack.click(CAROL, later, "approve").status_code == 200  # acked
        assert time.monotonic() - started < 3
        told = wait_until(lambda: len(notices(slack, CAROL)) >= 2 and notices(slack, CAROL))
        assert any("Cannot reach the database" in text for text in told)
        assert any("as soon as the database is back" in text for text in told)
        assert rotor.status(decided_first["id"]) == "approved"
        assert rotor.status(clicked_later["id"]) == "pending"
        # A click on the Home tab has no response_url: the tab itself says why.
        slack.click(CAROL, slack.homes[CAROL], "approve", clicked_later["id"])
        tab = home(slack, CAROL, "Cannot reach the database")
        assert "shown again as soon as" in texts(tab.blocks)
        time.sleep(2)  # the workers go round their loops several times while it is down

        cluster.start()
        wait_until(lambda: service.get("/readyz").status_code == 200, 30, "readyz 200 again")
        # Rotor took it just before the outage: recorded without waiting for the sync (1 h).
        assert "Approved" in decided(slack, decided_first["id"]).blocks[0]["text"]["text"]
        assert rotor.deliver(missed["id"]).status_code == 202
        posted(slack, missed["id"])
        slack.click(CAROL, later, "approve")
        decided(slack, clicked_later["id"])
        assert rotor.decisions == [
            (decided_first["id"], "approved"),
            (clicked_later["id"], "approved"),
        ]
        assert all(len(slack.find(a["id"])) == 1 for a in (decided_first, clicked_later, missed))
        # The tab shows its list again once the outbox has changed something in Slack (the
        # same count may show first for a moment, with the approval clicked since).
        wait_until(
            lambda: listed(home(slack, CAROL, "1 approval waits on you")) == [missed["id"]],
            what="the Home tab to list what is left",
        )
        log = service.output()
        assert "Traceback" not in log
        assert "database unavailable, waiting for it" in log
        for worker in ("outbox", "reminders", "sync", "home"):  # once per worker
            assert log.count(f"{worker}: database unavailable, waiting for it") <= 1
        assert "database is back" in log
    finally:
        service.stop()


def test_locked_sqlite_file_defers_webhooks_until_it_is_free(keys, slack, rotor, tmp_path):
    path = tmp_path / "rotor-slack.db"
    service = serve(keys, slack, rotor, tmp_path, f"sqlite+aiosqlite:///{path}")
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        approval = rotor.create("ops", {})
        # Waits for SQLite's busy timeout (behind the workers' waits for the one connection).
        body = rotor.event_body(approval["id"])
        answer = httpx.post(
            rotor.webhook_url,
            content=body,
            headers=sign_webhook(rotor.webhook_secret, body),
            timeout=60,
            trust_env=False,
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        lock.execute("ROLLBACK")
        assert rotor.deliver(approval["id"]).status_code == 202
        posted(slack, approval["id"])
        assert "Traceback" not in service.output()
    finally:
        lock.close()
        service.stop()


def test_a_connection_cut_by_the_server_is_an_outage_not_a_bug():
    """Failover, a restart, "the database system is starting up": PostgreSQL says so with SQLSTATE
    classes 08 and 57, which asyncpg's adapter raises as a bare DBAPIError."""
    if not PG_URL:
        pytest.skip("ROTOR_SLACK_TEST_DATABASE_URL is not set")

    async def cut() -> None:
        database = Database(PG_URL)
        try:
            with pytest.raises(DatabaseUnavailable, match="terminating connection"):
                async with database.session() as session:
                    await session.exec(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            with pytest.raises(sa.ProgrammingError):  # a mistake in SQL is still a bug to see
                async with database.session() as session:
                    await session.exec(text("SELECT * FROM no_such_table"))
            await database.ping()  # and the next session gets a fresh connection
        finally:
            await database.close()

    asyncio.run(cut())
