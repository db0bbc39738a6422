"""Burst drain: N approvals over K channels against a Slack that enforces a per-channel limit.

Runs the real service process on loopback with the stand-ins, delivers N signed webhooks at
once, and measures how long until every message is in Slack, against the least time the
limit allows. Prints drain time, that minimum, their ratio (target <= 1.1), duplicates and
losses (both 0).

    python bench/burst.py [--approvals 1000] [--channels 5] [--rate 20] [--database URL]
"""

from __future__ import annotations

import argparse
import time

from harness import deliver, stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="posts per second per channel")
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    channels = [f"C0BENCH{i}" for i in range(args.channels)]
    queues = "".join(
        f'[[queues]]\nname = "q{i}"\nchannel = "{c}"\n\n' for i, c in enumerate(channels)
    )
    policy = (
        f'[slack]\ndefault_channel = "{channels[0]}"\nposts_per_second = {args.rate}\n\n'
        f'[sync]\nevery = "1h"\n\n{queues}'
    )
    with stack(channels, policy, args.database, args.rate) as (slack, rotor, service):
        approvals = [rotor.create(f"q{i % args.channels}", {"i": i}) for i in range(args.approvals)]
        bodies = [rotor.event_body(a["id"]) for a in approvals]
        started = time.monotonic()
        accepted, codes = deliver(rotor.webhook_url, rotor.webhook_secret, bodies)
        assert set(codes) == {202}, set(codes)
        deadline = started + 20 * args.approvals / (args.rate * args.channels) + 30
        while sum(1 for m in slack.messages if m.metadata) < len(bodies):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        drained = time.monotonic() - started
        time.sleep(1)  # anything doubled would show up now
        counts = [len(slack.find(a["id"])) for a in approvals]
        refused = slack.count("chat.postMessage") - sum(counts)

    per_channel = args.approvals / args.channels
    minimum = max(0.0, per_channel - slack.burst) / args.rate
    scale = f"{args.approvals} over {args.channels} channels at {args.rate:g}/s each"
    print(f"approvals            {scale}")
    print(f"webhooks accepted in {accepted:.2f} s ({args.approvals / accepted:.0f}/s)")
    print(f"drain time           {drained:.2f} s")
    print(f"limit allows         {minimum:.2f} s")
    print(f"ratio                {drained / minimum:.3f}  (target <= 1.1)")
    print(f"429 answers          {refused}")
    print(f"duplicates           {sum(n - 1 for n in counts if n > 1)}")
    print(f"losses               {sum(1 for n in counts if n == 0)}")


if __name__ == "__main__":
    main()
