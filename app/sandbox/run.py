"""Run the stand-ins (and, for `rotor-slack sandbox`, the service) on loopback."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tempfile
from pathlib import Path

from app.config import Policy, load_policy, load_settings
from app.sandbox.rotor import FakeRotor
from app.sandbox.slack import FakeSlack
from app.sandbox.stack import address, bind, uvicorn_server

SAMPLE_POLICY = Policy.model_validate(
    {
        "slack": {"default_channel": "C0APPROVALS"},
        "reminders": {"escalation_channel": "C0ESCALATE"},
        "queues": [{"name": "payments", "channel": "C0FINANCE", "approvers": ["U0CAROL"]}],
    }
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


def run_sandbox(port: int) -> None:
    from app import logs, schema
    from app.main import create_app
    from app.store import Store

    keys = new_secrets()
    policy_path = load_settings().policy_path()
    policy = load_policy(policy_path) if policy_path else SAMPLE_POLICY
    slack = FakeSlack(keys["SLACK_BOT_TOKEN"], keys["SLACK_SIGNING_SECRET"], channels_of(policy))
    rotor = FakeRotor(keys["ROTOR_API_KEY"], keys["ROTOR_WEBHOOK_SECRET"])
    database = Path(tempfile.mkdtemp(prefix="rotor-slack-sandbox-")) / "sandbox.db"

    async def main() -> None:
        slack_socket, rotor_socket = bind(0), bind(0)
        slack.base_url, rotor_url = address(slack_socket), address(rotor_socket)
        slack_server, rotor_server = uvicorn_server(slack.app, 0), uvicorn_server(rotor.app, 0)
        others = [
            asyncio.create_task(slack_server.serve(sockets=[slack_socket])),
            asyncio.create_task(rotor_server.serve(sockets=[rotor_socket])),
        ]
        settings = load_settings(
            slack_bot_token=keys["SLACK_BOT_TOKEN"],
            slack_signing_secret=keys["SLACK_SIGNING_SECRET"],
            slack_api_url=f"{slack.base_url}/api/",
            rotor_api_key=keys["ROTOR_API_KEY"],
            rotor_api_url=rotor_url,
            rotor_webhook_secret=keys["ROTOR_WEBHOOK_SECRET"],
            database_url=os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{database}"),
        )
        store = Store(settings.database_url)
        await schema.upgrade(store)
        await store.close()
        service = uvicorn_server(create_app(settings, policy), port)
        slack.app_url = f"http://127.0.0.1:{port}/slack/events"
        rotor.webhook_url = f"http://127.0.0.1:{port}/rotor/webhook"
        print(f"rotor-slack sandbox: service on http://127.0.0.1:{port}")
        print(f"  Slack stand-in {slack.base_url}, Rotor stand-in {rotor_url}")
        print(f"  channels: {', '.join(channels_of(policy))}; database {settings.database_url}")
        await service.serve()
        for server in (slack_server, rotor_server):
            server.should_exit = True
        await asyncio.gather(*others)

    logs.setup()
    asyncio.run(main())
