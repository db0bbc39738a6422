"""Memory: peak RSS of the service holding a backlog of 10k approvals.

Slack refuses every post (a 429 storm) while 10k webhooks arrive, so all of them wait in the
outbox; prints the service's peak RSS (VmHWM, target < 200 MB) against its RSS when idle
after start, measured in the same run.

    python bench/memory.py [--approvals 10000] [--database URL]
"""

from __future__ import annotations

import argparse
import time

from harness import deliver, peak_rss_mb, stack

from app.sandbox.slack_objects import Fault


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=10_000)
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    policy = '[slack]\ndefault_channel = "C0BENCH"\n[sync]\nevery = "1h"\n'
    with stack(["C0BENCH"], policy, args.database) as (slack, rotor, service):
        idle = peak_rss_mb(service.process.pid)
        slack.fail(
            Fault("chat.postMessage", count=None, status=429, error="ratelimited", retry_after=5)
        )
        bodies = [
            rotor.event_body(rotor.create(f"q{i % 10}", {"i": i, "note": "x" * 500})["id"])
            for i in range(args.approvals)
        ]
        seconds, codes = deliver(rotor.webhook_url, rotor.webhook_secret, bodies)
        assert set(codes) == {202}, set(codes)
        time.sleep(3)  # the outbox keeps trying the backlog
        metrics = service.get("/metrics").text.splitlines()
        depth = next(m.split()[1] for m in metrics if m.startswith("rotor_slack_outbox_depth "))
        peak = peak_rss_mb(service.process.pid)
    waiting = f"{float(depth):.0f} waiting in the outbox"
    print(f"backlog                {args.approvals} approvals ({waiting})")
    print(f"idle RSS after start   {idle:6.1f} MB")
    print(f"peak RSS               {peak:6.1f} MB  (target < 200 MB)")
    print(f"peak / idle            {peak / idle:.2f}x")


if __name__ == "__main__":
    main()
