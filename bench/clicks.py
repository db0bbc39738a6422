"""Click latency: concurrent Approve clicks on distinct approvals while Rotor answers in 300 ms.

Prints the ack latency Slack sees (p50/p99, target p99 < 100 ms; Slack allows 3 s), the time
until the message shows the decision, and the ack's ratio to a plain `GET /healthz` round
trip measured in the same run (the floor of any request to the service).

    python bench/clicks.py [--clicks 200] [--concurrency 10] [--database URL]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from harness import percentile, stack

CLICKER = "U0BENCH"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    policy = '[slack]\ndefault_channel = "C0BENCH"\nposts_per_second = 1000\n[sync]\nevery = "1h"\n'
    with stack(["C0BENCH"], policy, args.database) as (slack, rotor, service):
        approvals = [rotor.enqueue("ops", {"i": i})["id"] for i in range(args.clicks)]
        while sum(1 for m in slack.messages if m.metadata) < args.clicks:
            time.sleep(0.05)
        messages = {a: slack.find(a)[0] for a in approvals}
        floor = []
        for _ in range(100):
            started = time.perf_counter()
            service.get("/healthz")
            floor.append(time.perf_counter() - started)
        rotor.latency = 0.3
        clicked_at: dict[str, float] = {}

        def click(approval_id: str) -> float:
            clicked_at[approval_id] = time.perf_counter()
            response = slack.click(CLICKER, messages[approval_id], "approve")
            assert response.status_code == 200
            return time.perf_counter() - clicked_at[approval_id]

        with ThreadPoolExecutor(args.concurrency) as pool:
            acks = list(pool.map(click, approvals))
        shown: dict[str, float] = {}
        deadline = time.perf_counter() + 60
        while len(shown) < len(approvals) and time.perf_counter() < deadline:
            for a in approvals:
                if a not in shown and messages[a].edited:
                    shown[a] = time.perf_counter() - clicked_at[a]
            time.sleep(0.005)
        decided = sum(1 for a in approvals if rotor.status(a) == "approved")

    print(f"clicks                 {args.clicks}, {args.concurrency} at a time, Rotor 300 ms")
    print(f"healthz round trip     p50 {percentile(floor, 50) * 1000:6.1f} ms")
    print(
        f"ack                    p50 {percentile(acks, 50) * 1000:6.1f} ms   "
        f"p99 {percentile(acks, 99) * 1000:6.1f} ms  (target p99 < 100 ms)"
    )
    shown_times = list(shown.values())
    print(
        f"message shows decision p50 {percentile(shown_times, 50) * 1000:6.1f} ms   "
        f"p99 {percentile(shown_times, 99) * 1000:6.1f} ms"
    )
    print(f"ack / healthz (p50)    {percentile(acks, 50) / percentile(floor, 50):.1f}x")
    print(f"decided in Rotor       {decided} of {args.clicks}; messages updated {len(shown)}")


if __name__ == "__main__":
    main()
