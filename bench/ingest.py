"""Webhook ingest: throughput and latency of `POST /rotor/webhook`, against a baseline.

Several concurrent clients (in a process of their own) send signed `approval.pending`
webhooks, each a new approval, for a fixed time: first to a bare Starlette endpoint that only
verifies the signature (the baseline, same uvicorn settings), then to the service. Then a
paced run at 100 requests/s measures the service's latency. Targets: >= 0.8 of the
baseline's throughput, p99 under 50 ms at 100 requests/s.

    python bench/ingest.py [--seconds 10] [--clients 16] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
from harness import percentile, stack

from app.sandbox.rotor import sign_webhook
from app.sandbox.stack import free_port


def _body() -> str:
    data = {
        "approvalId": f"apv_{uuid.uuid4().hex}",
        "jobId": f"job_{uuid.uuid4().hex[:12]}",
        "queueName": "payments",
        "payload": {"amount": 120, "currency": "EUR", "note": "x" * 200},
    }
    return json.dumps({"event": "approval.pending", "data": data})


async def _load(url: str, secret: str, seconds: float, clients: int, rate: float | None):
    """Closed loop with `clients` workers, or open loop at `rate` requests/s when given."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(trust_env=False, timeout=30, limits=limits) as http:

        async def one() -> None:
            body = _body()
            started = time.monotonic()
            response = await http.post(url, content=body, headers=sign_webhook(secret, body))
            latencies.append(time.monotonic() - started)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1

        async def worker() -> None:
            while time.monotonic() < deadline:
                await one()

        if rate is None:
            await asyncio.gather(*(worker() for _ in range(clients)))
        else:
            pending, start = set(), time.monotonic()
            for i in range(int(seconds * rate)):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
    return latencies, codes


def _load_in_process(url, secret, seconds, clients, rate):
    return asyncio.run(_load(url, secret, seconds, clients, rate))


def load(url, secret, seconds, clients, rate=None):
    """Run the load from a process of its own, so it does not share a CPU budget with us."""
    with ProcessPoolExecutor(1) as pool:
        return pool.submit(_load_in_process, url, secret, seconds, clients, rate).result()


def report(name: str, latencies: list[float], codes: dict, seconds: float) -> float:
    throughput = len(latencies) / seconds
    print(
        f"{name:<22} {throughput:7.0f} req/s   p50 {percentile(latencies, 50) * 1000:6.1f} ms"
        f"   p99 {percentile(latencies, 99) * 1000:6.1f} ms   statuses {codes}"
    )
    return throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--posts-per-second", type=float, default=1.0, help="the pace of posts to Slack"
    )
    args = parser.parse_args()
    policy = (
        f'[slack]\ndefault_channel = "C0BENCH"\nposts_per_second = {args.posts_per_second}\n'
        '[sync]\nevery = "1h"\n'
    )

    with stack(["C0BENCH"], policy, args.database) as (slack, rotor, service):
        port = free_port()
        baseline = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("baseline_app.py")),
                str(port),
                rotor.webhook_secret,
            ]
        )
        try:
            time.sleep(1.5)
            base_url = f"http://127.0.0.1:{port}/rotor/webhook"
            base = report(
                "baseline",
                *load(base_url, rotor.webhook_secret, args.seconds, args.clients),
                args.seconds,
            )
        finally:
            baseline.terminate()
            baseline.wait()
        ours = report(
            "rotor-slack",
            *load(rotor.webhook_url, rotor.webhook_secret, args.seconds, args.clients),
            args.seconds,
        )
        paced, codes = load(
            rotor.webhook_url, rotor.webhook_secret, args.seconds, args.clients, rate=100
        )
        report("rotor-slack @100/s", paced, codes, args.seconds)
    print(f"ratio to baseline      {ours / base:.2f}  (target >= 0.8)")
    print(f"p99 at 100 req/s       {percentile(paced, 99) * 1000:.1f} ms  (target < 50 ms)")


if __name__ == "__main__":
    main()
