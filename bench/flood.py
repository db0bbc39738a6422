"""Flood: stalled 1 MiB uploads with fresh-looking signature headers, against the real service.

A separate process keeps N connections open to /rotor/webhook, each declaring a 1 MiB body
with Standard Webhooks headers that pass every check but the signature, sending all of it but
the last KiB and stalling until the service answers (with --reconnect it opens a new one a
second after each answer, as a determined attacker would; --half-headers N adds N connections
that stop in the middle of their header block).
Meanwhile this process probes /healthz on a new connection every quarter second and sends a
real signed webhook every second. Prints /healthz latency, the time real webhooks took to be
accepted and the service's peak RSS (VmHWM, target < 300 MB), each beside its baseline
measured in the same run before the flood.

    python bench/flood.py [--connections 600] [--seconds 20] [--half-headers 0] [--reconnect]
                          [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import httpx
from harness import peak_rss_mb, percentile, stack

from app.sandbox.rotor import sign_webhook
from app.webhooks import MAX_BODY

PIECE = 64 * 1024  # written at a time, so the attacker's own buffers stay small


def attack(
    host: str, port: int, connections: int, half: int, seconds: float, again: bool
) -> dict[str, int]:
    return asyncio.run(_attack(host, port, connections, half, seconds, again))


async def _attack(
    host: str, port: int, connections: int, half: int, seconds: float, again: bool
) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    outcomes: Counter[str] = Counter()
    piece = b"x" * PIECE
    most = MAX_BODY - 1024

    async def upload() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = (
                "POST /rotor/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {MAX_BODY}\r\nContent-Type: application/json\r\n"
                f"webhook-id: msg_flood\r\nwebhook-timestamp: {int(time.time())}\r\n"
                "webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            )
            writer.write(head.encode())
            for start in range(0, most, PIECE):
                writer.write(piece[: min(PIECE, most - start)])
                await writer.drain()
            # All but the last KiB is sent: stall until the service answers.
            line = await reader.readline()
            return line.split()[1].decode() if line else "closed"
        finally:
            writer.close()

    async def half_headers() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"POST /rotor/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            return "half headers: " + ("closed" if not await reader.read() else "answered")
        finally:
            writer.close()

    async def connection(upload=upload) -> None:
        while (left := deadline - loop.time()) > 0:
            try:
                outcomes[await asyncio.wait_for(upload(), left)] += 1
            except TimeoutError:
                outcomes["still stalled at the end"] += 1
            except OSError:
                outcomes["reset while sending"] += 1
            if not again:
                return
            await asyncio.sleep(1)

    await asyncio.gather(
        *(connection() for _ in range(connections)),
        *(connection(half_headers) for _ in range(half)),
    )
    return dict(outcomes)


# Every probe on a new connection, as a load balancer's; one client, so no TLS set-up each time.
PROBE = httpx.Client(timeout=10, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))


def healthz_ms(url: str) -> float:
    """One liveness probe; inf if it fails."""
    started = time.monotonic()
    try:
        ok = PROBE.get(url + "/healthz").status_code == 200
    except httpx.HTTPError:
        ok = False
    return (time.monotonic() - started) * 1000 if ok else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--half-headers", type=int, default=0, help="connections that stop mid-headers"
    )
    parser.add_argument("--reconnect", action="store_true", help="a new upload after each answer")
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    policy = '[slack]\ndefault_channel = "C0BENCH"\nposts_per_second = 50\n[sync]\nevery = "1h"\n'
    with stack(["C0BENCH"], policy, args.database) as (slack, rotor, service):
        pid = service.process.pid
        idle = peak_rss_mb(pid)
        baseline = [healthz_ms(service.url) for _ in range(40)]
        host, port = service.url.removeprefix("http://").split(":")
        with ProcessPoolExecutor(1) as pool:
            flood = pool.submit(
                attack,
                host,
                int(port),
                args.connections,
                args.half_headers,
                args.seconds,
                args.reconnect,
            )
            time.sleep(min(3.0, args.seconds / 4))  # let the connections pile up
            probes, accepted, approvals = [], [], []
            end = time.monotonic() + args.seconds - 4
            while time.monotonic() < end:
                probes.append(healthz_ms(service.url))
                if len(probes) % 4 == 0:
                    approval = rotor.create("q", {"n": len(approvals)})
                    body = rotor.event_body(approval["id"])
                    started = time.monotonic()
                    response = httpx.post(
                        rotor.webhook_url,
                        content=body,
                        headers=sign_webhook(rotor.webhook_secret, body),
                        timeout=30,
                        trust_env=False,
                    )
                    accepted.append((response.status_code, time.monotonic() - started))
                    approvals.append(approval["id"])
                time.sleep(0.25)
            peak = peak_rss_mb(pid)
            outcomes = flood.result()
        deadline = time.monotonic() + 30
        while not all(slack.find(a) for a in approvals) and time.monotonic() < deadline:
            time.sleep(0.1)
        posted = sum(1 for a in approvals if slack.find(a))
        metrics = service.get("/metrics").text.splitlines()
    counted = [m for m in metrics if m.startswith("rotor_slack_webhooks_total")]

    failed = sum(1 for p in probes if p == float("inf"))
    good = [p for p in probes if p != float("inf")] or [float("inf")]
    codes = Counter(code for code, _ in accepted)
    took = [seconds for _, seconds in accepted]
    again = ", each opened again a second after its answer" if args.reconnect else ""
    half = f" and {args.half_headers} half-sent header blocks" if args.half_headers else ""
    flood = f"{args.connections} stalled 1 MiB uploads{half}, {args.seconds:g} s{again}"
    print(f"flood                  {flood}")
    print(f"attacker's outcomes    {dict(sorted(outcomes.items()))}")
    print(
        f"/healthz idle          p50 {percentile(baseline, 50):.1f} ms, "
        f"max {max(baseline):.1f} ms ({len(baseline)} probes)"
    )
    print(
        f"/healthz under flood   p50 {percentile(good, 50):.1f} ms, p99 "
        f"{percentile(good, 99):.1f} ms, max {max(good):.1f} ms "
        f"({len(probes)} probes, {failed} failed)"
    )
    print(
        f"real webhooks          {dict(codes)} in p50 {percentile(took, 50) * 1000:.0f} ms, "
        f"max {max(took) * 1000:.0f} ms; {posted}/{len(approvals)} posted to Slack"
    )
    print(f"idle RSS after start   {idle:6.1f} MB")
    print(f"peak RSS               {peak:6.1f} MB  (target < 300 MB)")
    print(f"peak / idle            {peak / idle:.2f}x")
    for line in counted:
        print(f"  {line}")


if __name__ == "__main__":
    main()
