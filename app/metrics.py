"""Prometheus metrics of this process, served at `GET /metrics`."""

from prometheus_client import Counter, Gauge

WEBHOOKS = Counter("rotor_slack_webhooks", "Rotor webhooks by outcome", ["outcome"])
MESSAGES = Counter("rotor_slack_slack_messages", "Slack messages sent by kind", ["kind"])
DECISIONS = Counter("rotor_slack_decisions", "Decisions from Slack by outcome", ["outcome"])
SLACK_ERRORS = Counter("rotor_slack_slack_errors", "Slack API errors by error", ["error"])
ROTOR_ERRORS = Counter("rotor_slack_rotor_errors", "Rotor API errors by kind", ["kind"])
OUTBOX_DEPTH = Gauge("rotor_slack_outbox_depth", "Tasks waiting in the outbox")
OUTBOX_OLDEST = Gauge("rotor_slack_outbox_oldest_seconds", "Age of the oldest waiting task")
OUTBOX_FAILED = Gauge(
    "rotor_slack_outbox_failed", "Tasks kept as failed (rotor-slack retry-failed)"
)
OUTBOX_FAILURES = Counter("rotor_slack_outbox_failures", "Tasks that failed for good")
