"""Reminder sweep: time of one sweep over 1k, 10k and 100k pending approvals, 1% of them due.

Uses the service's own store and reminders worker on a real database (a sweep happens inside
the service, so it is timed in-process). The baseline, measured in the same run, is what a
sweep without the index would start with: reading every pending row. Target: the sweep's
cost tracks the due rows, not the total (cost per due row at 100k within 2x of 1k).

    python bench/sweep.py [--sizes 1000,10000,100000] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta

from sqlmodel import select

from app import schema
from app.config import parse_policy
from app.db import Store
from app.db.models import Approval, Status, utcnow
from app.workers.reminders import Reminders

POLICY = parse_policy('[slack]\ndefault_channel = "C0BENCH"\n[reminders]\nevery = "1h"\n')


async def fill(store: Store, size: int) -> int:
    now, due = utcnow(), 0
    rows = []
    for i in range(size):
        is_due = i % 100 == 0
        due += is_due
        rows.append(
            {
                "id": f"apv_{i:032x}",
                "job_id": f"job_{i}",
                "queue_name": f"q{i % 7}",
                "payload": {"i": i, "note": "x" * 100},
                "created_at": now - timedelta(hours=2),
                "status": Status.PENDING,
                "channel": "C0BENCH",
                "ts": f"1700000000.{i:06d}",
                "reminders_sent": 0,
                "next_reminder_at": now - timedelta(minutes=1)
                if is_due
                else now + timedelta(hours=1),
            }
        )
    async with store.session() as s:
        conn = await s.connection()
        for start in range(0, size, 5000):
            await conn.execute(Approval.__table__.insert(), rows[start : start + 5000])
    return due


async def measure(database: str, size: int) -> tuple[int, float, float]:
    store = Store(database)
    try:
        await schema.upgrade(store)
        due = await fill(store, size)
        started = time.perf_counter()
        async with store.session() as s:
            query = select(Approval).where(Approval.status == Status.PENDING)
            pending = (await s.exec(query)).all()
            [a for a in pending if a.next_reminder_at <= utcnow()]
        scan = time.perf_counter() - started
        started = time.perf_counter()
        queued = await Reminders(store, POLICY, lambda: None).sweep()
        sweep = time.perf_counter() - started
        assert queued == due, (queued, due)
        return due, sweep, scan
    finally:
        await store.close()


def fresh(database: str | None, size: int) -> str:
    if database is None:
        return f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='rotor-slack-sweep-')}/{size}.db"
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database)
    name = f"{url.database}_sweep_{size}"

    async def recreate() -> None:
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(recreate())
    return url.set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--database", help="a PostgreSQL URL (default: SQLite files)")
    args = parser.parse_args()
    columns = ("pending", "due", "sweep ms", "ms per due", "scan-all ms", "sweep/scan")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (8, 6, 9, 11, 12, 11), strict=True)))
    per_due = {}
    for size in (int(s) for s in args.sizes.split(",")):
        due, sweep, scan = asyncio.run(measure(fresh(args.database, size), size))
        per_due[size] = sweep / due
        print(
            f"{size:>8} {due:>6} {sweep * 1000:>9.1f} {sweep / due * 1000:>11.2f}"
            f" {scan * 1000:>12.1f} {sweep / scan:>11.2f}"
        )
    sizes = sorted(per_due)
    ratio = per_due[sizes[-1]] / per_due[sizes[0]]
    print(f"cost per due row, {sizes[-1]} vs {sizes[0]} pending: {ratio:.2f}x  (target <= 2)")


if __name__ == "__main__":
    main()
