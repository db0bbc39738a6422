"""A decision made in Rotor (CLI, SDK, REST, its timeout policy), until Slack shows it.

Decides approvals one after another "from the CLI": the Rotor stand-in sends each
`approval.approved` event, as Rotor does, and the time until the message is updated is taken.
The baseline, measured in the same run, is the same with no decision events (an endpoint
subscribed to `approval.pending` only), where the sync (`[sync] every`, 5 s here) finds them.
Target: p50 < 1 s with events.

    python bench/decided_in_rotor.py [--decisions 50] [--database URL]
"""

from __future__ import annotations

import argparse
import time

from harness import empty_database, percentile, stack

POLICY = """
[slack]
default_channel = "C0BENCH"
posts_per_second = 1000
[sync]
every = "5s"
[rotor]
requests_per_minute = 1000
"""


def measure(decisions: int, database: str | None, events: bool) -> list[float]:
    empty_database(database)
    with stack(["C0BENCH"], POLICY, database) as (slack, rotor, _service):
        if not events:
            rotor.event_types = {"approval.pending"}
        approvals = [rotor.enqueue("ops", {"i": i})["id"] for i in range(decisions)]
        while sum(1 for m in slack.messages if m.metadata) < decisions:
            time.sleep(0.05)
        seconds = []
        for approval_id in approvals:
            message = slack.find(approval_id)[0]
            started = time.perf_counter()
            rotor.decide_outside(approval_id, "approved")
            while not message.edited:
                time.sleep(0.002)
            seconds.append(time.perf_counter() - started)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--baseline", type=int, default=10, help="decisions found by the sync")
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with_events = measure(args.decisions, args.database, events=True)
    by_sync = measure(args.baseline, args.database, events=False)
    print(f"decided in Rotor, until the message shows it ({args.decisions} decisions)")
    for name, values in (("decision events", with_events), ("sync every 5 s", by_sync)):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(f"  {name:<16} p50 {p50 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms")
    ratio = percentile(by_sync, 50) / percentile(with_events, 50)
    print(f"  events are {ratio:.0f}x sooner at p50 than the sync (target: p50 < 1 s)")


if __name__ == "__main__":
    main()
