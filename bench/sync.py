"""Sync: one reconcile pass over 10k and 100k pending approvals, its time and peak RSS.

Rotor (the stand-in, in a process of its own) lists every approval as pending but 10%, which
were decided elsewhere and are pending here; 1% were never delivered here. One pass must
record the 1% and find the 10%. Runs the service's own sync worker in-process on a real
database (each size in a fresh process, so its peak RSS is its own) and prints the time of the
pass and the process's peak RSS during it, the smaller size being the baseline. A PostgreSQL
--database is emptied before each size.

    python bench/sync.py [--sizes 10000,100000] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import empty_database

KEY, SECRET = "rk_bench", "whsec_YmVuY2hiZW5jaGJlbmNoYmVuY2g="


def approval_id(i: int) -> str:
    return f"apv_{i:032x}"


def decided_elsewhere(i: int) -> bool:
    return i % 10 == 1


def never_delivered(i: int) -> bool:
    return i % 100 == 2


def serve_rotor(size: int, urls, stop) -> None:
    """The Rotor stand-in with `size` approvals, until `stop` is set."""
    from app.sandbox.rotor import FakeRotor
    from app.sandbox.stack import ThreadServer

    rotor = FakeRotor(KEY, SECRET)
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    for i in range(size):
        rotor.approvals[approval_id(i)] = {
            "id": approval_id(i),
            "jobId": f"job_{i}",
            "queueName": f"q{i % 7}",
            "payload": {"i": i},
            "status": "approved" if decided_elsewhere(i) else "pending",
            "createdAt": created,
            "workspaceId": "ws_bench",
        }
    server = ThreadServer(rotor.app)
    urls.put(server.url)
    stop.wait()
    server.stop()


async def fill(store, size: int) -> None:
    """The approvals this service knows as pending, posted (all but the never delivered)."""
    from app.db.models import Approval, Status, utcnow

    now = utcnow()
    async with store.session() as s:
        conn = await s.connection()
        for start in range(0, size, 5000):
            rows = [
                {
                    "id": approval_id(i),
                    "job_id": f"job_{i}",
                    "queue_name": f"q{i % 7}",
                    "payload": {"i": i},
                    "created_at": now,
                    "status": Status.PENDING,
                    "channel": "C0BENCH",
                    "ts": f"1700000000.{i:06d}",
                    "reminders_sent": 0,
                }
                for i in range(start, min(size, start + 5000))
                if not never_delivered(i)
            ]
            await conn.execute(Approval.__table__.insert(), rows)


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_pass(database: str, rotor_url: str, size: int) -> dict:
    from app import schema
    from app.config import parse_policy
    from app.db import Store
    from app.intake import Intake, OutsideDecisions
    from app.rotor import RotorClient
    from app.workers.sync import Sync

    policy = parse_policy('[slack]\ndefault_channel = "C0BENCH"\n[sync]\nevery = "1h"\n')
    store = Store(database)
    try:
        await schema.upgrade(store)
        await fill(store, size)
        async with RotorClient(rotor_url, KEY) as rotor:
            intake = Intake(store, policy, lambda: None)
            outside = OutsideDecisions(store, rotor, intake, lambda: None)
            sync = Sync(store, rotor, intake, outside, policy, lambda: None)
            before = rss_mb("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # noqa: ASYNC240  (peak RSS from here on)
            started = time.perf_counter()
            recorded, decided = await sync.sync_once()
            seconds = time.perf_counter() - started
            peak = rss_mb("VmHWM")
    finally:
        await store.close()
    want = (sum(map(never_delivered, range(size))), sum(map(decided_elsewhere, range(size))))
    assert (recorded, decided) == want, ((recorded, decided), want)
    return {"seconds": seconds, "before": before, "peak": peak, "recorded": recorded}


def measure(database: str, size: int, results) -> None:
    ctx = multiprocessing.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    rotor = ctx.Process(target=serve_rotor, args=(size, urls, stop))
    rotor.start()
    try:
        results.put(asyncio.run(one_pass(database, urls.get(timeout=300), size)))
    finally:
        stop.set()
        rotor.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--database", help="a PostgreSQL URL (default: SQLite files)")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    print(f"{'pending':>8} {'pass s':>8} {'ms per 1k':>10} {'RSS before MB':>14} {'peak MB':>8}")
    rows = {}
    for size in (int(s) for s in args.sizes.split(",")):
        empty_database(args.database)
        db = args.database or (
            f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='rotor-slack-sync-')}/{size}.db"
        )
        results = ctx.Queue()
        worker = ctx.Process(target=measure, args=(db, size, results))
        worker.start()
        r = results.get(timeout=1800)
        worker.join(60)
        rows[size] = r
        print(
            f"{size:>8} {r['seconds']:>8.1f} {r['seconds'] / size * 1e6:>10.1f}"
            f" {r['before']:>14.1f} {r['peak']:>8.1f}"
        )
    small, large = min(rows), max(rows)
    if small != large:
        growth = rows[large]["peak"] - rows[small]["peak"]
        per = rows[large]["seconds"] / large / (rows[small]["seconds"] / small)
        print(f"{large} vs {small}: time per approval {per:.2f}x, peak RSS {growth:+.1f} MB")


if __name__ == "__main__":
    main()
