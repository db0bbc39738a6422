"""Click acks while Home tabs with large payloads render.

Posts `--big` approvals whose payloads are `--megabytes` of JSON each (many small objects, the
costly shape to walk), plus small ones to click. Baseline, same run: a `GET /healthz` round trip
and click acks with no Home tab open. Then `--people` people open their Home tab (each tab shows
every large approval) and keep reopening it while Approve clicks arrive; every click also
refreshes the open tabs. Prints the ack latency Slack sees (p50/p99, target p99 < 100 ms; Slack
gives up at 3 s), and how long a tab takes from open to published.

    python bench/render_ack.py [--big 40] [--megabytes 1] [--people 5] [--clicks 100]
    python bench/render_ack.py --code /tmp/before   # the service from another commit's export
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from harness import empty_database, percentile, stack

CHANNEL = "C0BENCH"
CLICKER = "U0CLICK"
SLACK_WAITS = 3.0


def big_payload(n: int, size: int) -> dict:
    """About `size` bytes of JSON: a batch of small records, as an export or a bulk job has."""
    record = {
        "id": 0,
        "name": "Beneficiary name",
        "amount": 1234.5,
        "currency": "EUR",
        "tags": ["a", "b"],
        "note": "lorem ipsum dolor sit amet " * 2,
    }
    each = len(json.dumps(record)) + 2
    return {"batch": n, "items": [{**record, "id": i} for i in range(size // each)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=40)
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--people", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    parser.add_argument("--code", help="a directory with another version's `app` to serve")
    args = parser.parse_args()
    policy = (
        f'[slack]\ndefault_channel = "{CHANNEL}"\nposts_per_second = 1000\n[sync]\nevery = "1h"\n'
        "[rotor]\nrequests_per_minute = 100000\n"  # every click decides, and refreshes the tabs
    )
    people = [f"U0H{i:04d}" for i in range(args.people)]
    size = int(args.megabytes * 1_000_000)
    baseline_clicks = max(20, args.clicks // 2)
    empty_database(args.database)
    with stack([CHANNEL], policy, args.database, code=args.code) as (slack, rotor, service):
        slack.members = {CHANNEL: [*people, CLICKER]}
        for n in range(args.big):
            rotor.enqueue("bulk", big_payload(n, size))
        small = [rotor.enqueue("ops", {"i": i})["id"] for i in range(baseline_clicks + args.clicks)]
        total = args.big + len(small)
        deadline = time.monotonic() + 600
        while len(slack.channel_messages(CHANNEL)) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        messages = {a: slack.find(a)[0] for a in small}
        time.sleep(1)

        floor = []
        for _ in range(50):
            started = time.perf_counter()
            service.get("/healthz")
            floor.append(time.perf_counter() - started)

        def click(approval_id: str) -> float:
            started = time.perf_counter()
            try:
                slack.click(CLICKER, messages[approval_id], "approve")
            except httpx.TimeoutException:
                return float("inf")
            return time.perf_counter() - started

        def clicks(ids: list[str]) -> list[float]:
            with ThreadPoolExecutor(4) as pool:
                futures = []
                for a in ids:
                    futures.append(pool.submit(click, a))
                    time.sleep(0.05)  # a steady stream, not one burst
                return [f.result() for f in futures]

        idle = clicks(small[:baseline_clicks])

        opened: list[float] = []
        stop = threading.Event()

        def keep_opening() -> None:
            """Each person reopens their tab as soon as the last open was published."""
            while not stop.is_set():
                for user in people:
                    before = slack.homes.get(user)
                    started = time.perf_counter()
                    slack.open_home(user)
                    while slack.homes.get(user) is before and not stop.is_set():
                        time.sleep(0.002)
                    opened.append(time.perf_counter() - started)

        opener = threading.Thread(target=keep_opening, daemon=True)
        opener.start()
        while len(opened) < len(people):  # every tab has been rendered once
            time.sleep(0.05)
        busy = clicks(small[baseline_clicks:])
        stop.set()
        opener.join(60)

    ms = lambda values, p: percentile(values, p) * 1000  # noqa: E731
    late = sum(1 for t in busy if t > SLACK_WAITS)
    print(
        f"payloads {args.big} x {args.megabytes:g} MB, open tabs {args.people}, "
        f"clicks {len(idle)} idle + {len(busy)} while tabs render"
    )
    print(f"healthz round trip            p50 {ms(floor, 50):7.1f} ms  p99 {ms(floor, 99):7.1f} ms")
    print(f"ack, no tab open (baseline)   p50 {ms(idle, 50):7.1f} ms  p99 {ms(idle, 99):7.1f} ms")
    print(
        f"ack while tabs render         p50 {ms(busy, 50):7.1f} ms  p99 {ms(busy, 99):7.1f} ms"
        f"  max {max(busy) * 1000:7.1f} ms  (target p99 < 100 ms)"
    )
    print(f"acks past Slack's 3 s         {late} of {len(busy)}")
    print(
        f"tab open -> published         p50 {ms(opened, 50):7.1f} ms  p99 {ms(opened, 99):7.1f} ms"
        f"  ({len(opened)} opens)"
    )


if __name__ == "__main__":
    main()
