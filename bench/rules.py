"""Rules on the payload: what resolving an approval's rules costs when it arrives, with 20
`[[queues.rules]]` none of which holds (so all 20 are evaluated), against the same queue
without rules, measured in the same run. Target: < 1 ms p99 added for a typical payload.

Timed in-process (resolution runs inside the webhook's request, so this is its share), in
the thread's CPU time: another process taking the core for a time slice (4 ms) is not ours.

    python bench/rules.py [--rounds 5000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from app.config import Policy, parse_policy

RULES = "\n".join(
    f"""  [[queues.rules]]
  when = "payload.amount >= {(i + 1) * 1_000_000} && payload.currency == 'EUR'"
  name = "rule {i}"
  required_approvals = 2
"""
    for i in range(20)
)
POLICY = f"""[slack]
default_channel = "C0BENCH"

[[queues]]
name = "plain"

[[queues]]
name = "ruled"
{RULES}"""

PAYLOADS = {
    "typical": {
        "amount": 48_500,
        "currency": "EUR",
        "beneficiary": {"name": "Acme GmbH", "iban": "DE89370400440532013000"},
        "lines": [{"sku": f"SKU-{i}", "qty": i, "note": "x" * 20} for i in range(15)],
    },
    "large": {
        "amount": 48_500,
        "currency": "EUR",
        "rows": [{"email": f"user{i}@example.com", "n": i} for i in range(2500)],
    },
}


def timings(policy: Policy, queue: str, payload: object, rounds: int) -> list[float]:
    """Seconds per resolution, as `Intake.accept` does it: resolve, then keep as JSON."""
    out = []
    for _ in range(rounds):
        started = time.thread_time()
        policy.resolve(queue, payload, "job_1").model_dump(mode="json")
        out.append(time.thread_time() - started)
    return out


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    policy = parse_policy(POLICY)
    for label, payload in PAYLOADS.items():
        rounds = args.rounds if label == "typical" else max(200, args.rounds // 20)
        size = len(json.dumps(payload)) // 1024
        base = timings(policy, "plain", payload, rounds)
        ruled = timings(policy, "ruled", payload, rounds)
        added = [r - b for r, b in zip(sorted(ruled), sorted(base), strict=True)]
        print(
            f"{label}, {size} KB, {rounds} rounds: no rules p50 {percentile(base, 50) * 1e3:.3f}"
            f" ms, 20 rules p50 {percentile(ruled, 50) * 1e3:.3f} ms p99 "
            f"{percentile(ruled, 99) * 1e3:.3f} ms; added p99 {percentile(added, 99) * 1e3:.3f} ms"
        )
    typical = PAYLOADS["typical"]
    added = percentile(timings(policy, "ruled", typical, args.rounds), 99) - percentile(
        timings(policy, "plain", typical, args.rounds), 99
    )
    print(f"target: < 1 ms added p99 for a typical payload: {'met' if added < 1e-3 else 'MISSED'}")


if __name__ == "__main__":
    main()
