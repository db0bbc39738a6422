"""bolt listeners, one module a feature. Each acks first (Slack waits 3 s) and works after;
a modal opens right after the ack, while its `trigger_id` is fresh. Refusals are raised as
`app.errors` and told to the person by `interactions.app`'s error handler."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt.context.async_context import AsyncBoltContext

from app.db.approvals import Approvals
from app.decisions import Decider
from app.edits import Editor
from app.rotor import RotorClient
from app.slack.client import SlackClient
from app.slack.home import HomeTabs


@dataclass(frozen=True)
class Services:
    """What listeners work with; `interactions.app` puts it in every request's context."""

    decider: Decider
    rotor: RotorClient
    approvals: Approvals
    home: HomeTabs
    slack: SlackClient
    editor: Editor


def services(context: AsyncBoltContext) -> Services:
    return context["services"]
