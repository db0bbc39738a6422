"""Burst drain: N approvals over K channels against a Slack that enforces a per-channel limit.

Runs the real service process on loopback with the stand-ins, delivers N signed webhooks at
once, and measures how long until every message is in Slack, against the least time the
limit allows. Prints drain time, that minimum, their ratio (target <= 1.1), duplicates and
losses (both 0).

    python bench/burst.py [--approvals 1000] [--channels 5] [--rate 20] [--database URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import httpx

from app.sandbox.rotor import FakeRotor, sign_webhook
from app.sandbox.run import new_secrets
from app.sandbox.slack import FakeSlack
from app.sandbox.stack import ServiceProcess, ThreadServer, service_env

SENDERS = 2  # processes, each sending one webhook at a time


def _noop(_: int) -> None:
    pass


def _send(url: str, secret: str, bodies: list[str]) -> list[int]:
    with httpx.Client(trust_env=False, timeout=30) as http:
        return [
            http.post(url, content=b, headers=sign_webhook(secret, b)).status_code for b in bodies
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="posts per second per channel")
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="rotor-slack-bench-"))
    channels = [f"C0BENCH{i}" for i in range(args.channels)]
    keys = new_secrets()
    slack = FakeSlack(
        keys["SLACK_BOT_TOKEN"], keys["SLACK_SIGNING_SECRET"], channels, args.rate, burst=2
    )
    rotor = FakeRotor(keys["ROTOR_API_KEY"], keys["ROTOR_WEBHOOK_SECRET"])
    slack.base_url = ThreadServer(slack.app).url
    rotor.base_url = ThreadServer(rotor.app).url
    queues = "".join(
        f'[[queues]]\nname = "q{i}"\nchannel = "{c}"\n\n' for i, c in enumerate(channels)
    )
    policy = workdir / "policy.toml"
    policy.write_text(
        f'[slack]\ndefault_channel = "{channels[0]}"\nposts_per_second = {args.rate}\n\n'
        f'[sync]\nevery = "1h"\n\n{queues}'
    )
    database = args.database or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    service = ServiceProcess(service_env(keys, slack, rotor, database, policy), workdir)
    service.wait_ready()
    rotor.webhook_url = f"{service.url}/rotor/webhook"

    approvals = [rotor.create(f"q{i % args.channels}", {"i": i}) for i in range(args.approvals)]
    bodies = [rotor.event_body(a["id"]) for a in approvals]
    chunks = [bodies[i::SENDERS] for i in range(SENDERS)]
    # Senders run in processes of their own, so they do not slow the Slack stand-in down.
    with ProcessPoolExecutor(SENDERS) as pool:
        list(pool.map(_noop, range(SENDERS)))  # start the processes before the clock
        started = time.monotonic()
        send = partial(_send, rotor.webhook_url, rotor.webhook_secret)
        codes = [code for codes in pool.map(send, chunks) for code in codes]
    accepted = time.monotonic() - started
    assert set(codes) == {202}, set(codes)
    ids = [a["id"] for a in approvals]
    deadline = started + 20 * args.approvals / (args.rate * args.channels) + 30
    while sum(1 for m in slack.messages if m.metadata) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.01)
    drained = time.monotonic() - started
    time.sleep(1)  # anything doubled would show up now
    counts = {a: len(slack.find(a)) for a in ids}
    service.stop()

    per_channel = args.approvals / args.channels
    minimum = max(0.0, per_channel - slack.burst) / args.rate
    scale = f"{args.approvals} over {args.channels} channels at {args.rate:g}/s each"
    print(f"approvals            {scale}")
    print(f"webhooks accepted in {accepted:.2f} s ({args.approvals / accepted:.0f}/s)")
    print(f"drain time           {drained:.2f} s")
    print(f"limit allows         {minimum:.2f} s")
    print(f"ratio                {drained / minimum:.3f}  (target <= 1.1)")
    print(f"429 answers          {slack.count('chat.postMessage') - sum(counts.values())}")
    print(f"duplicates           {sum(n - 1 for n in counts.values() if n > 1)}")
    print(f"losses               {sum(1 for n in counts.values() if n == 0)}")


if __name__ == "__main__":
    main()
