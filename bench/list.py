"""Slash list: `/approvals` with 10k pending approvals in Rotor, time to the first page.

Measures from the slash command leaving "Slack" until the ephemeral list is shown, against
the baseline of fetching that first page straight from the Rotor stand-in in the same run.

    python bench/list.py [--pending 10000] [--runs 20] [--database URL]
"""

from __future__ import annotations

import argparse
import time

import httpx
from harness import percentile, stack

USER = "U0BENCH"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    policy = '[slack]\ndefault_channel = "C0BENCH"\n[sync]\nevery = "1h"\n'
    with stack(["C0BENCH"], policy, args.database) as (slack, rotor, service):
        for i in range(args.pending):
            rotor.create(f"q{i % 10}", {"i": i, "note": "x" * 100})
        direct, listed, acks = [], [], []
        headers = {"Authorization": f"Bearer {rotor.api_key}"}
        with httpx.Client(trust_env=False, timeout=30, headers=headers) as http:
            for _ in range(args.runs):
                started = time.perf_counter()
                http.get(
                    f"{rotor.base_url}/v1/approvals", params={"status": "pending", "limit": 15}
                )
                direct.append(time.perf_counter() - started)
        for _ in range(args.runs):
            shown = len(slack.ephemerals_for(USER))
            started = time.perf_counter()
            assert slack.slash(USER, "C0BENCH", "").status_code == 200
            acks.append(time.perf_counter() - started)
            while len(slack.ephemerals_for(USER)) == shown:
                time.sleep(0.001)
            listed.append(time.perf_counter() - started)

    ms = lambda values, p: percentile(values, p) * 1000  # noqa: E731
    print(f"pending in Rotor       {args.pending}, {args.runs} runs")
    print(f"Rotor first page       p50 {ms(direct, 50):6.1f} ms   p99 {ms(direct, 99):6.1f} ms")
    print(f"/approvals ack         p50 {ms(acks, 50):6.1f} ms   p99 {ms(acks, 99):6.1f} ms")
    print(f"/approvals list shown  p50 {ms(listed, 50):6.1f} ms   p99 {ms(listed, 99):6.1f} ms")
    print(f"list / Rotor (p50)     {percentile(listed, 50) / percentile(direct, 50):.1f}x")


if __name__ == "__main__":
    main()
