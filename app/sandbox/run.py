"""Run the stand-ins (and, for `rotor-slack sandbox`, the service) on loopback."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tempfile
from pathlib import Path

from app.config import Policy, load_policy, load_settings, parse_policy
from app.sandbox.rotor import FakeRotor
from app.sandbox.slack import FakeSlack
from app.sandbox.stack import address, bind, uvicorn_server

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
every = "3s"  # a decision "from the CLI" shows in Slack within seconds

[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["U0CAROL", "S0FINANCE"]
""",
    source="sample policy",
)


def new_secrets() -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": f"xoxb-sandbox-{secrets.token_hex(8)}",
        "SLACK_SIGNING_SECRET": secrets.token_hex(16),
        "ROTOR_API_KEY": f"rk_sandbox_{secrets.token_hex(8)}",
        "ROTOR_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    }


def channels_of(policy: Policy) -> list[str]:
    found = {policy.slack.default_channel, policy.reminders.escalation_channel}
    found |= {q.channel for q in policy.queues}
    return sorted(c for c in found if c)


def run_sandbox(port: int, config: Path | None) -> None:
    """The service, the stand-ins and the workspace page, in one process on loopback."""
    from app import logs, schema
    from app.db import Store
    from app.main import create_app
    from app.sandbox.workspace import workspace_app

    keys = new_secrets()
    policy_path = config or load_settings().policy_path()
    policy = load_policy(policy_path) if policy_path else SAMPLE_POLICY
    channels = channels_of(policy)
    slack = FakeSlack(keys["SLACK_BOT_TOKEN"], keys["SLACK_SIGNING_SECRET"], channels)
    rotor = FakeRotor(keys["ROTOR_API_KEY"], keys["ROTOR_WEBHOOK_SECRET"])
    page = workspace_app(slack, rotor, policy, channels)
    database = Path(tempfile.mkdtemp(prefix="rotor-slack-sandbox-")) / "sandbox.db"

    async def main() -> None:
        sockets = {name: bind(0) for name in ("slack", "rotor", "service")}
        sockets["page"] = bind(port)
        slack.base_url, rotor.base_url = address(sockets["slack"]), address(sockets["rotor"])
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
            database_url=os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{database}"),
        )
        store = Store(settings.database_url)
        await schema.upgrade(store)
        await store.close()
        apps = {
            "slack": slack.app,
            "rotor": rotor.app,
            "service": create_app(settings, policy),
            "page": page,
        }
        servers = {name: uvicorn_server(app, 0) for name, app in apps.items()}
        print(f"rotor-slack sandbox: open {address(sockets['page'])}", flush=True)
        print(f"  service {service_url}, database {settings.database_url}", flush=True)
        await asyncio.gather(*(servers[n].serve(sockets=[sockets[n]]) for n in servers))

    logs.setup("WARNING")
    asyncio.run(main())
