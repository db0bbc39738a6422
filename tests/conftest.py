"""Fixtures: the Slack and Rotor stand-ins over real HTTP, and the real service as a process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings as hypothesis_settings

from app.sandbox.rotor import FakeRotor
from app.sandbox.run import new_secrets
from app.sandbox.slack import FakeSlack
from app.sandbox.stack import ServiceProcess, ThreadServer, service_env
from tests.preloaded import Forked

# In CI the generated examples are the same every run, so a submission never fails on a draw;
# elsewhere they vary from run to run, to keep finding new cases.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

CHANNELS = ["C0APPROVALS", "C0FINANCE", "C0ESCALATE", "C0OPS"]
CAROL, DAVE, MALLORY = "U0CAROL", "U0DAVE", "U0MALLORY"  # Dave approves via the S0FINANCE group
EVERYONE = (CAROL, DAVE, MALLORY, "U0ERIN", "U0VISITOR", "U0REQ", "U0X", "U0NEW", "U0FIRST")
EVERYONE += tuple(f"U0A{n}" for n in range(1, 7)) + tuple(f"U0CLICK{n}" for n in range(6))
PAYMENTS = """
[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["U0CAROL", "S0FINANCE"]
"""
OPS = """
[[queues]]
name = "ops"
channel = "C0OPS"
"""


def make_policy(
    *,
    rate: float = 50,
    timeout: str = "10s",
    after: str = "1h",
    every: str = "4h",
    escalate_after: int = 3,
    escalation_channel: str | None = "C0ESCALATE",
    check_every: str = "1s",
    sync_every: str = "1h",
    poll: str | None = None,
    rotor_rate: int = 100_000,
    queues: str = PAYMENTS,
) -> str:
    """The policy file of a test: what it varies as arguments, the rest the same everywhere."""
    escalation = f'escalation_channel = "{escalation_channel}"' if escalation_channel else ""
    polling = f'poll = "{poll}"' if poll else ""
    return f"""
[slack]
default_channel = "C0APPROVALS"
posts_per_second = {rate}
timeout = "{timeout}"

[reminders]
after = "{after}"
every = "{every}"
escalate_after = {escalate_after}
{escalation}
check_every = "{check_every}"

[sync]
every = "{sync_every}"
{polling}

[rotor]
requests_per_minute = {rotor_rate}
{queues}"""


POLICY = make_policy()
PG_URL = os.environ.get("ROTOR_SLACK_TEST_DATABASE_URL")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def keys() -> dict[str, str]:
    return new_secrets()


@pytest.fixture
def slack(keys):
    fake = FakeSlack(
        keys["SLACK_BOT_TOKEN"],
        keys["SLACK_SIGNING_SECRET"],
        CHANNELS,
        posts_per_second=50,
        burst=5,
    )
    fake.usergroups = {"S0FINANCE": [DAVE]}
    # Everyone the tests act as is in every channel; a test narrows a channel to see who may not.
    fake.members = {channel: list(EVERYONE) for channel in CHANNELS}
    server = ThreadServer(fake.app)
    fake.base_url = server.url
    yield fake
    server.stop()


@pytest.fixture
def rotor(keys):
    fake = FakeRotor(keys["ROTOR_API_KEY"], keys["ROTOR_WEBHOOK_SECRET"])
    server = ThreadServer(fake.app)
    fake.base_url = server.url
    yield fake
    server.stop()


# This run's own databases, one a worker: two runs on one server (CI and a developer, two
# worktrees) that share a base name must not drop each other's schema in the middle of a test.
RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)[:8]
_created: list[str] = []


def _own_database(url: str):
    from sqlalchemy.engine import make_url

    base = make_url(url)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return base, base.set(database=f"{base.database}_{RUN}_{worker}")


def _dsn(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _fresh_postgres(url: str) -> str:
    """An empty database of this test worker's own (workers run side by side)."""
    import asyncpg

    base, mine = _own_database(url)
    if not _created:
        conn = await asyncpg.connect(_dsn(base))
        try:
            await conn.execute(f'CREATE DATABASE "{mine.database}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await conn.close()
        _created.append(mine.database)
    conn = await asyncpg.connect(_dsn(mine))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    return mine.render_as_string(hide_password=False)


async def _drop_own_database(url: str) -> None:
    import asyncpg

    base, mine = _own_database(url)
    conn = await asyncpg.connect(_dsn(base))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{mine.database}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_this_runs_database():
    yield
    if PG_URL and _created:
        asyncio.run(_drop_own_database(PG_URL))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'rotor-slack.db'}"
    if not PG_URL:
        pytest.skip("ROTOR_SLACK_TEST_DATABASE_URL is not set")
    return asyncio.run(_fresh_postgres(PG_URL))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows the log of every service it started (a flake is read, not guessed)."""
    report = yield
    if report.failed:
        for service in getattr(item, "services", ()):
            report.sections.append((f"log of {service.log.name}", service.output()[-20_000:]))
    return report


@pytest.fixture
def start_service(request, tmp_path, keys, slack, rotor, database_url):
    """Start `rotor-slack serve` on the stand-ins; every start shares the test's database."""
    started: list[ServiceProcess] = []
    request.node.services = started

    def start(
        policy: str = POLICY, *, metrics_port: int | None = None, **env_overrides: str | None
    ) -> ServiceProcess:
        """`env_overrides` change the environment; a None removes that variable.
        `metrics_port`: `serve --metrics-port`."""
        n = len(started)
        policy_file = tmp_path / f"policy-{n}.toml"
        policy_file.write_text(policy)
        env = service_env(keys, slack, rotor, database_url, policy_file) | env_overrides
        env = {name: value for name, value in env.items() if value is not None}
        service = ServiceProcess(
            env, tmp_path, name=f"service-{n}", metrics_port=metrics_port, launch=Forked
        )
        started.append(service)
        service.wait_ready()
        # The sync's first pass runs at start: approvals a test creates from here on are not in
        # it (else they would be recorded by the sync, not by the test's webhook or the poll).
        if rotor.down_status is None:
            passes = "rotor_slack_sync_passes_total"
            wait_until(lambda: metric(service, passes) >= 1, 20, "the start-up sync's pass")
        slack.app_url = f"{service.url}/slack/events"
        rotor.webhook_url = f"{service.url}/rotor/webhook"
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def service(start_service) -> ServiceProcess:
    return start_service()


def audit(service: ServiceProcess, cwd, fmt: str = "jsonl") -> str:
    """`rotor-slack audit --since 1h` on the service's database: what it wrote to stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "app", "audit", "--since", "1h", "--format", fmt],
        env=service.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def audit_rows(service: ServiceProcess, cwd) -> dict[str, dict]:
    """The audit's rows, by approval id."""
    return {r["approval_id"]: r for r in map(json.loads, audit(service, cwd).splitlines())}


def set_claim(database_url: str, approval_id: str, user: str, expires_in: timedelta) -> None:
    """Leave a decision claim on an approval, as a replica that died mid-decision would."""
    from sqlalchemy import update

    from app.db import Store
    from app.db.models import Approval, utcnow

    async def write() -> None:
        store = Store(database_url)
        try:
            async with store.session() as s:
                await s.exec(
                    update(Approval)
                    .where(Approval.id == approval_id)
                    .values(claimed_by=user, claimed_until=utcnow() + expires_in)
                )
        finally:
            await store.close()

    asyncio.run(write())


def stored(database_url: str, *approval_ids: str) -> list:
    """The approvals as the service stored them (to assert on the state that rules work out)."""
    from app.db import Store

    async def read() -> list:
        store = Store(database_url)
        try:
            return [await store.approvals.get(a) for a in approval_ids]
        finally:
            await store.close()

    return asyncio.run(read())


def outbox_rows(database_url: str) -> list:
    """Every task left in the outbox, in id order."""
    from sqlmodel import select

    from app.db import Store
    from app.db.models import OutboxTask

    async def read() -> list:
        store = Store(database_url)
        try:
            async with store.session() as s:
                return list((await s.exec(select(OutboxTask).order_by(OutboxTask.id))).all())
        finally:
            await store.close()

    return asyncio.run(read())


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives them back without a zone)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def metric(service: ServiceProcess, name: str) -> float:
    """The value of an unlabelled metric of a service."""
    for line in service.get("/metrics", ops=True).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def drained(*services: ServiceProcess, timeout: float = 60.0) -> None:
    """Wait until the outbox is empty (every task done and deleted): nothing more goes to Slack."""
    wait_until(
        lambda: all(metric(s, "rotor_slack_outbox_depth") == 0 for s in services),
        timeout,
        "an empty outbox",
    )


def posted(slack: FakeSlack, approval_id: str, timeout: float = 10.0):
    """The one message posted for an approval, once it is there."""
    return wait_until(lambda: slack.find(approval_id), timeout, f"{approval_id} posted")[0]


def preview_text(message) -> str:
    """The payload preview of an approval message (a rich-text preformatted block)."""
    block = next(b for b in message.blocks if b.get("block_id") == "preview")
    return block["elements"][0]["elements"][0]["text"]


@pytest.fixture
def service_env_for(keys, slack, rotor, database_url):
    """The environment of a service on the stand-ins, with the policy file in `workdir`."""

    def env_for(workdir, policy: str = POLICY) -> dict[str, str]:
        policy_file = workdir / "policy.toml"
        policy_file.write_text(policy)
        return service_env(keys, slack, rotor, database_url, policy_file)

    return env_for


# Any Slack control sequence but our own dates: nothing else may be live in what we post.
LIVE = re.compile(r"<(?!!date\^)")


def mrkdwn_texts(value):
    """Every string Slack parses as mrkdwn in a block tree."""
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            yield value["text"]
        for v in value.values():
            yield from mrkdwn_texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from mrkdwn_texts(v)
