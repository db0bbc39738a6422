"""What every benchmark needs: the stand-ins in this process, the service as its own process,
webhook senders in processes of their own, and percentiles."""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx

from app.sandbox.rotor import FakeRotor, sign_webhook
from app.sandbox.run import new_secrets
from app.sandbox.slack import FakeSlack
from app.sandbox.stack import ServiceProcess, ThreadServer, service_env


@contextmanager
def stack(
    channels: list[str],
    policy: str,
    database: str | None,
    rate: float = 1000.0,
    replicas: int = 1,
    code: str | None = None,
):
    """(slack, rotor, service): the stand-ins with the service on them, stopped on exit.

    With `replicas` > 1, `service` is a list of that many services on the one database.
    `code`: a directory holding another version's `app` package for the service to run (an
    export of an earlier commit), to measure before and after in one sitting."""
    workdir = Path(tempfile.mkdtemp(prefix="rotor-slack-bench-"))
    keys = new_secrets()
    slack = FakeSlack(
        keys["SLACK_BOT_TOKEN"], keys["SLACK_SIGNING_SECRET"], channels, rate, burst=2
    )
    rotor = FakeRotor(keys["ROTOR_API_KEY"], keys["ROTOR_WEBHOOK_SECRET"])
    servers = [ThreadServer(slack.app), ThreadServer(rotor.app)]
    slack.base_url, rotor.base_url = servers[0].url, servers[1].url
    (workdir / "policy.toml").write_text(policy)
    database = database or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    env = service_env(keys, slack, rotor, database, workdir / "policy.toml")
    if code:
        env["PYTHONPATH"] = str(Path(code).resolve())
    services = []
    try:
        for n in range(replicas):
            services.append(ServiceProcess(env, workdir, name=f"service-{n}").wait_ready())
        service = services[0]
        slack.app_url = f"{service.url}/slack/events"
        rotor.webhook_url = f"{service.url}/rotor/webhook"
        yield slack, rotor, (service if replicas == 1 else services)
    finally:
        for service in services:
            service.stop()
        for server in servers:
            server.stop()


def empty_database(database: str | None) -> None:
    """Drop every table of a PostgreSQL database, so a run starts from nothing (SQLite runs
    get a fresh file anyway)."""
    if database is None or database.startswith("sqlite"):
        return
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    async def drop() -> None:
        url = make_url(database).set(drivername="postgresql")
        conn = await asyncpg.connect(url.render_as_string(hide_password=False))
        try:
            await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    asyncio.run(drop())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[p - 1]
        if len(values) > 1
        else values[0]
    )


def _noop(_: int) -> None:
    pass


def _send(url: str, bodies: list[str], secret: str) -> list[int]:
    with httpx.Client(trust_env=False, timeout=30) as http:
        return [
            http.post(url, content=b, headers=sign_webhook(secret, b)).status_code for b in bodies
        ]


def deliver(
    url: str | list[str], secret: str, bodies: list[str], senders: int = 2
) -> tuple[float, list[int]]:
    """Send signed webhooks from `senders` processes, sender i to url i (round robin) when
    given several; (seconds taken, status codes)."""
    urls = [url] if isinstance(url, str) else url
    chunks = [bodies[i::senders] for i in range(senders)]
    targets = [urls[i % len(urls)] for i in range(senders)]
    with ProcessPoolExecutor(senders) as pool:
        list(pool.map(_noop, range(senders)))  # the processes start before the clock does
        started = time.monotonic()
        parts = pool.map(partial(_send, secret=secret), targets, chunks)
        codes = [c for part in parts for c in part]
    return time.monotonic() - started, codes
