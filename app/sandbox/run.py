"""Run the stand-ins (and, for `rotor-slack sandbox`, the service) on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import shutil
import signal
import tempfile
from pathlib import Path

import uvicorn

from app.config import (
    Policy,
    load_policy,
    load_settings,
    parse_policy,
    without_password,
)
from app.sandbox.rotor import FakeRotor
from app.sandbox.slack import FakeSlack
from app.sandbox.stack import address, bind, uvicorn_server
from app.serving import listen

# Used when no policy file is given: short reminder times, so a fast-forward shows them.
SAMPLE_POLICY = parse_policy(
    """
[slack]
default_channel = "C0APPROVALS"

[reminders]
after = "1h"
every = "1h"
escalate_after = 2
escalation_channel = "C0ESCALATE"
check_every = "2s"

[sync]
every = "1m"  # decisions "from the CLI" arrive as Rotor's decision events; this catches the rest

[rotor]
requests_per_minute = 60  # Rotor's Free plan; the local Rotor answers 429 past it

[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["U0CAROL", "S0FINANCE"]
title = "Pay {amount} {currency} to {beneficiary.name}"
fields = ["amount", "beneficiary.name", "reference"]
mask = ["beneficiary.iban"]
required_approvals = 2      # Carol and a member of the finance group
requester = "requested_by"  # told in a DM how it ended; cannot approve their own payment
expire_after = "6h"         # fast-forward the clock 6 h to see it expire

  # Over 100,000 the CFO must be one of the two, and whoever approves types the amount.
  [[queues.rules]]
  when = "payload.amount >= 100000"
  name = "payment over 100k"
  approvers = ["U0CFO", "S0FINANCE"]
  required_approvals = 2
  confirm = "amount"

[[queues]]
name = "outreach"
editable = ["subject", "body"]  # an approver may correct an AI-drafted email (Edit)
""",
    source="sample policy",
)


def new_secrets() -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": f"xoxb-sandbox-{secrets.token_hex(8)}",
        "SLACK_SIGNING_SECRET": secrets.token_hex(16),
        "ROTOR_API_KEY": f"rt_ws_sandbox_{secrets.token_hex(8)}",
        "ROTOR_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    }


def channels_of(policy: Policy) -> list[str]:
    found = {policy.slack.default_channel, policy.reminders.escalation_channel}
    found |= {q.channel for q in policy.queues}
    return sorted(c for c in found if c)


class _Server(uvicorn.Server):
    """A server that leaves signals to run_sandbox, which stops all four servers together."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def run_sandbox(
    port: int, config: Path | None, database_url: str | None = None, socket_mode: bool = False
) -> None:
    """The service, the stand-ins and the workspace page, in one process on loopback.

    Only what is passed counts: the policy file is `config` (else the sample policy) and the
    database `database_url` (else a temporary one, removed on exit), never the environment's
    DATABASE_URL or ./rotor-slack.toml, so trying the sandbox cannot touch a real deployment.
    With `socket_mode`, Slack reaches the service over the socket the service opens."""
    from app import logs, schema
    from app.main import create_app
    from app.sandbox.workspace import workspace_app

    keys = new_secrets()
    policy = load_policy(config, "--config") if config else SAMPLE_POLICY
    policy.require_serving(str(config))  # exactly what `serve` would refuse
    channels = channels_of(policy)
    app_token = f"xapp-1-A0ROTORSLACK-1-{secrets.token_hex(8)}" if socket_mode else None
    slack = FakeSlack(
        keys["SLACK_BOT_TOKEN"], keys["SLACK_SIGNING_SECRET"], channels, app_token=app_token
    )
    rotor = FakeRotor(keys["ROTOR_API_KEY"], keys["ROTOR_WEBHOOK_SECRET"])
    rotor.requests_per_minute = policy.rotor.requests_per_minute
    page = workspace_app(slack, rotor, policy, channels)
    page_socket = listen("127.0.0.1", port, "rotor-slack sandbox")
    temp = Path(tempfile.mkdtemp(prefix="rotor-slack-sandbox-"))

    async def main() -> None:
        sockets = {name: bind(0) for name in ("slack", "rotor", "service")}
        sockets["page"] = page_socket
        slack.base_url, rotor.base_url = address(sockets["slack"]), address(sockets["rotor"])
        slack.page_url = address(page_socket)
        service_url = address(sockets["service"])
        slack.app_url, rotor.webhook_url = (
            f"{service_url}/slack/events",
            f"{service_url}/rotor/webhook",
        )
        settings = load_settings(
            slack_bot_token=keys["SLACK_BOT_TOKEN"],
            slack_signing_secret=keys["SLACK_SIGNING_SECRET"],
            slack_api_url=f"{slack.base_url}/api/",
            rotor_api_key=keys["ROTOR_API_KEY"],
            rotor_api_url=rotor.base_url,
            rotor_webhook_secret=keys["ROTOR_WEBHOOK_SECRET"],
            database_url=database_url or f"sqlite+aiosqlite:///{temp / 'sandbox.db'}",
            rotor_slack_config=config,
            slack_app_token=app_token,
        )
        setting = "DATABASE_URL" if database_url is None else "--database-url"
        await schema.prepare(settings.database_url, migrate=True, setting=setting)
        apps = {
            "slack": slack.app,
            "rotor": rotor.app,
            "service": create_app(settings, policy),
            "page": page,
        }
        servers = {name: _Server(uvicorn_server(app, 0).config) for name, app in apps.items()}

        def stop() -> None:  # Ctrl-C or SIGTERM; a second time, at once
            # The service first: it closes its socket to Slack while the stand-in still answers.
            server = servers["service"]
            server.force_exit = server.should_exit
            server.should_exit = True

        async def serve(name: str) -> None:
            await servers[name].serve(sockets=[sockets[name]])
            if name == "service":  # then the stand-ins and the page
                for other in servers.values():
                    other.force_exit = other.should_exit
                    other.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop)
        where = "temporary, removed on exit" if database_url is None else "from --database-url"
        print(f"rotor-slack sandbox: open {address(page_socket)}", flush=True)
        print(f"  policy: {config or 'the sample policy (--config FILE tries yours)'}", flush=True)
        slack_way = "Slack over Socket Mode" if socket_mode else "Slack over HTTP"
        print(f"  service {service_url} ({slack_way})", flush=True)
        print(f"  database {without_password(settings.database_url)} ({where})", flush=True)
        await asyncio.gather(*(serve(name) for name in servers))

    logs.setup("WARNING")
    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(temp, ignore_errors=True)
