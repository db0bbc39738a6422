"""Home tabs: open latency and the refresh of every open tab after a change, with many pending.

Opens the Home tab of `--people` people with `--pending` approvals posted (the tab shows the
oldest that fit Slack's 100 blocks), then enqueues one more approval and times how long until
every open tab shows it, counting views.publish calls. Baseline, same run: one views.publish
straight to the Slack stand-in.

    python bench/home.py [--pending 1000] [--people 50] [--database URL]
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
from harness import empty_database, percentile, stack

CHANNEL = "C0BENCH"


def publishes(slack) -> list[tuple[str, str]]:
    return [(a["user_id"], a["view"]) for m, a in list(slack.calls) if m == "views.publish"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    policy = (
        f'[slack]\ndefault_channel = "{CHANNEL}"\nposts_per_second = 500\n[sync]\nevery = "1h"\n'
    )
    people = [f"U0B{i:04d}" for i in range(args.people)]
    empty_database(args.database)
    with stack([CHANNEL], policy, args.database) as (slack, rotor, service):
        slack.members = {CHANNEL: people}  # the queues have no approvers: the channel decides
        for i in range(args.pending):
            rotor.enqueue(f"q{i % 5}", {"i": i, "note": "x" * 100})
        while len(slack.channel_messages(CHANNEL)) < args.pending:
            time.sleep(0.05)
        time.sleep(2)  # the posts are recorded

        baseline = []
        view = {
            "type": "home",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}],
        }
        headers = {"Authorization": f"Bearer {slack.token}"}
        with httpx.Client(trust_env=False, timeout=30, headers=headers) as http:
            for _ in range(20):
                started = time.perf_counter()
                http.post(
                    f"{slack.base_url}/api/views.publish", json={"user_id": "U0X", "view": view}
                )
                baseline.append(time.perf_counter() - started)

        opened = []
        for user in people:
            started = time.perf_counter()
            slack.open_home(user)
            while user not in slack.homes:
                time.sleep(0.001)
            opened.append(time.perf_counter() - started)

        before = len(publishes(slack))
        started = time.perf_counter()
        rotor.enqueue("q0", {"i": "newest"})
        shown_at: dict[str, float] = {}
        while len(shown_at) < len(people) and time.perf_counter() - started < 120:
            for user in people:
                if user not in shown_at and f"{args.pending + 1} approvals" in json.dumps(
                    slack.homes[user].view
                ):
                    shown_at[user] = time.perf_counter() - started
            time.sleep(0.005)
        refreshed = len(publishes(slack)) - before
        time.sleep(3)  # nothing more should go out
        extra = len(publishes(slack)) - before - refreshed

    ms = lambda values, p: percentile(values, p) * 1000  # noqa: E731
    print(f"pending {args.pending}, open tabs {args.people}")
    print(
        f"views.publish alone       p50 {ms(baseline, 50):7.1f} ms  p99 {ms(baseline, 99):7.1f} ms"
    )
    print(
        f"open -> tab published     p50 {ms(opened, 50):7.1f} ms  p99 {ms(opened, 99):7.1f} ms"
        f"  ({percentile(opened, 50) / percentile(baseline, 50):.1f}x views.publish)"
    )
    times = list(shown_at.values())
    print(
        f"new approval -> tab shows p50 {ms(times, 50):7.1f} ms  p99 {ms(times, 99):7.1f} ms"
        f"  ({len(times)} of {args.people} tabs)"
    )
    print(f"publishes for the change  {refreshed} (+{extra} after), one per open tab expected")


if __name__ == "__main__":
    main()
