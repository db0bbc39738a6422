"""Prometheus metrics of this process, served at `GET /metrics`."""

from collections.abc import Iterable
from datetime import UTC

from prometheus_client import Counter, Gauge, Histogram

from app import clock

WEBHOOKS = Counter("rotor_slack_webhooks", "Rotor webhooks by outcome", ["outcome"])
MESSAGES = Counter("rotor_slack_slack_messages", "Slack messages sent by kind", ["kind"])
DECISIONS = Counter("rotor_slack_decisions", "Decisions from Slack by outcome", ["outcome"])
SLACK_ERRORS = Counter("rotor_slack_slack_errors", "Slack API errors by error", ["error"])
ROTOR_ERRORS = Counter("rotor_slack_rotor_errors", "Rotor API errors by kind", ["kind"])
ROTOR_RATE_LIMITED = Counter("rotor_slack_rotor_rate_limited", "Rotor answers of 429")
ROTOR_UNREADABLE = Counter(
    "rotor_slack_rotor_unreadable_items",
    "Approvals Rotor listed that cannot be read or stored (each counted once)",
)
SYNC_PASSES = Counter("rotor_slack_sync_passes", "Full passes of the sync with Rotor completed")
ROTOR_BUDGET_WAITS = Counter(
    "rotor_slack_rotor_budget_waits",
    "Rotor calls that waited for the rate budget, by priority (people, background)",
    ["priority"],
)
ROTOR_BUDGET_WAITED = Counter(
    "rotor_slack_rotor_budget_waited_seconds",
    "Seconds Rotor calls spent waiting for the rate budget, by priority",
    ["priority"],
)
OUTBOX_DEPTH = Gauge("rotor_slack_outbox_depth", "Tasks waiting in the outbox")
OUTBOX_OLDEST = Gauge("rotor_slack_outbox_oldest_seconds", "Age of the oldest waiting task")
OUTBOX_FAILED = Gauge(
    "rotor_slack_outbox_failed", "Tasks kept as failed (rotor-slack retry-failed)"
)
OUTBOX_FAILURES = Counter("rotor_slack_outbox_failures", "Tasks that failed for good")
DECISION_SECONDS = Histogram(
    "rotor_slack_decision_seconds",
    "Time from an approval's request to its decision",
    ["queue", "outcome"],
    buckets=(60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
)


OTHER_QUEUE = "other"
_named_queues: frozenset[str] = frozenset()


def name_queues(names: Iterable[str]) -> None:
    """The queues a label may name: the policy's. Any other queue name (Rotor may send any
    number of them) is labelled `other`, so /metrics stays bounded."""
    global _named_queues
    _named_queues = frozenset(names)


def queue_label(name: str) -> str:
    return name if name in _named_queues else OTHER_QUEUE


def observe_decision(approval, outcome: str) -> None:
    """`approval`: an app.db.models.Approval, or Rotor's own (duck-typed: metrics sit below
    both and import neither)."""
    created = approval.created_at or clock.now()
    if created.tzinfo is None:  # SQLite gives times back without their zone (UTC)
        created = created.replace(tzinfo=UTC)
    waited = (clock.now() - created).total_seconds()
    DECISION_SECONDS.labels(queue=queue_label(approval.queue_name), outcome=outcome).observe(
        max(0, waited)
    )
