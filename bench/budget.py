"""The Rotor rate budget: a sync pass over 10k pending approvals at 60 requests a minute.

Rotor (the stand-in, enforcing the same limit over any sliding minute with 429) lists 10,000
approvals pending, all known here: the pass is 100 list calls of 100. It runs the service's own
sync worker in-process, through the budget on a real database, and prints the pass's time
against the least the budget allows spent evenly (calls × 60 / requests_per_minute), the
calls Rotor saw in its busiest minute and the 429s. Targets: ≤ 1.2× the least time, 0 × 429.

    python bench/budget.py [--pending 10000] [--per-minute 60] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from harness import empty_database

KEY = "rt_ws_bench_key"


async def one_pass(database: str, pending: int, per_minute: int) -> None:
    from app import schema
    from app.config import parse_policy
    from app.db import Store
    from app.db.budget import RotorBudget
    from app.db.models import Approval
    from app.intake import Intake, OutsideDecisions, from_rotor
    from app.rotor import RotorApproval, RotorClient
    from app.sandbox.rotor import FakeRotor
    from app.sandbox.stack import ThreadServer
    from app.workers.sync import PAGE_SIZE, Sync

    rotor = FakeRotor(KEY, "whsec_YmVuY2hiZW5jaGJlbmNoYmVuY2g=")
    for i in range(pending):
        rotor.create("ops", {"i": i})
    rotor.requests_per_minute = per_minute
    server = ThreadServer(rotor.app)
    policy = parse_policy('[slack]\ndefault_channel = "C0BENCH"\n')
    store = Store(database)
    try:
        await schema.upgrade(store)
        async with store.session() as s:  # every one known and posted here
            for listed in rotor.newest_first():
                arrived = from_rotor(RotorApproval.model_validate(listed))
                posted = {"channel": "C0BENCH", "ts": "1700000000.000001"}
                s.add(Approval(**vars(arrived), **posted))
        budget = RotorBudget(store, per_minute)
        async with RotorClient(server.url, KEY, budget=budget) as people:
            rotor_client = people.background()
            intake = Intake(store, policy, lambda: None)
            outside = OutsideDecisions(store, rotor_client, intake, lambda: None)
            sync = Sync(store, rotor_client, intake, outside, policy, lambda: None)
            started = time.perf_counter()
            await sync.sync_once()
            seconds = time.perf_counter() - started
    finally:
        await store.close()
        server.stop()
    calls = len(rotor.request_times)
    least = calls * 60 / per_minute
    times = rotor.request_times
    busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    print(f"sync pass over {pending} pending at {per_minute} requests a minute")
    print(f"  calls to Rotor           {calls} (pages of {PAGE_SIZE})")
    print(f"  pass                     {seconds:7.1f} s")
    print(f"  least the budget allows  {least:7.1f} s (spent evenly)")
    print(f"  ratio                    {seconds / least:7.2f}x (target <= 1.2)")
    print(f"  busiest minute           {busiest} calls (limit {per_minute})")
    print(f"  answered 429             {rotor.rate_limited}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--per-minute", type=int, default=60)
    parser.add_argument("--database", help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    empty_database(args.database)
    database = args.database or (
        f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='rotor-slack-budget-')}/budget.db"
    )
    asyncio.run(one_pass(database, args.pending, args.per_minute))


if __name__ == "__main__":
    main()
