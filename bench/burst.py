"""Burst drain: N approvals over K channels against a Slack that enforces a per-channel limit.

Runs the real service process on loopback with the stand-ins, delivers N signed webhooks at
once, and measures how long until every message is in Slack, against the least time the
limit allows. Prints drain time, that minimum, their ratio (target <= 1.1), 429 answers,
duplicates and losses (all 0). With --replicas R > 1 the same burst runs twice in one go,
on one replica and on R replicas sharing the database (webhooks spread over them), side by
side. A PostgreSQL --database is emptied before each run.

    python bench/burst.py [--approvals 1000] [--channels 5] [--rate 20] [--replicas 1]
                          [--database URL]
"""

from __future__ import annotations

import argparse
import time

from harness import deliver, empty_database, stack


def run(args: argparse.Namespace, replicas: int) -> dict[str, str]:
    channels = [f"C0BENCH{i}" for i in range(args.channels)]
    queues = "".join(
        f'[[queues]]\nname = "q{i}"\nchannel = "{c}"\n\n' for i, c in enumerate(channels)
    )
    policy = (
        f'[slack]\ndefault_channel = "{channels[0]}"\nposts_per_second = {args.rate}\n\n'
        f'[sync]\nevery = "1h"\n\n{queues}'
    )
    empty_database(args.database)
    with stack(channels, policy, args.database, args.rate, replicas) as (slack, rotor, service):
        services = service if isinstance(service, list) else [service]
        urls = [f"{s.url}/rotor/webhook" for s in services]
        approvals = [rotor.create(f"q{i % args.channels}", {"i": i}) for i in range(args.approvals)]
        bodies = [rotor.event_body(a["id"]) for a in approvals]
        started = time.monotonic()
        accepted, codes = deliver(urls, rotor.webhook_secret, bodies)
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
    return {
        "webhooks accepted in": f"{accepted:.2f} s ({args.approvals / accepted:.0f}/s)",
        "drain time": f"{drained:.2f} s",
        "limit allows": f"{minimum:.2f} s",
        "ratio (<= 1.1)": f"{drained / minimum:.3f}",
        "429 answers": str(refused),
        "duplicates": str(sum(n - 1 for n in counts if n > 1)),
        "losses": str(sum(1 for n in counts if n == 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="posts per second per channel")
    parser.add_argument("--replicas", type=int, default=1, help="compared with one replica")
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    counts = [1] if args.replicas == 1 else [1, args.replicas]
    results = [run(args, n) for n in counts]
    scale = f"{args.approvals} over {args.channels} channels at {args.rate:g}/s each"
    print(f"{'approvals':<22}{scale}")
    print(f"{'replicas':<22}" + "".join(f"{n:<24}" for n in counts))
    for key in results[0]:
        print(f"{key:<22}" + "".join(f"{r[key]:<24}" for r in results))


if __name__ == "__main__":
    main()
