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
def stack(channels: list[str], policy: str, database: str | None, rate: float = 1000.0):
    """(slack, rotor, service): the stand-ins with the service on them, stopped on exit."""
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
    service = ServiceProcess(env, workdir).wait_ready()
    slack.app_url, rotor.webhook_url = f"{service.url}/slack/events", f"{service.url}/rotor/webhook"
    try:
        yield slack, rotor, service
    finally:
        service.stop()
        for server in servers:
            server.stop()


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


def _send(url: str, secret: str, bodies: list[str]) -> list[int]:
    with httpx.Client(trust_env=False, timeout=30) as http:
        return [
            http.post(url, content=b, headers=sign_webhook(secret, b)).status_code for b in bodies
        ]


def deliver(url: str, secret: str, bodies: list[str], senders: int = 2) -> tuple[float, list[int]]:
    """Send signed webhooks from `senders` processes; (seconds taken, status codes)."""
    chunks = [bodies[i::senders] for i in range(senders)]
    with ProcessPoolExecutor(senders) as pool:
        list(pool.map(_noop, range(senders)))  # the processes start before the clock does
        started = time.monotonic()
        codes = [c for part in pool.map(partial(_send, url, secret), chunks) for c in part]
    return time.monotonic() - started, codes
