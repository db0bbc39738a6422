"""The audit trail: one row per decision, every approver of a quorum with their time. Pure."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from app.db.models import Approval, Status

FIELDS = [
    "approval_id",
    "queue",
    "job_id",
    "outcome",
    "decided_in",
    "rule",
    "edit",
    "decided_by",
    "approvers",
    "reason",
    "requester",
    "requested_at",
    "decided_at",
]


def outcome(approval: Approval) -> str:
    """Did the job run: `approved` (it ran), `rejected` or `expired` (it did not)."""
    if approval.expired:
        return "expired"
    return "approved" if approval.status == Status.APPROVED else "rejected"


def decided_in(approval: Approval) -> str:
    """Where: `slack` (a person here), `outside_slack` (Rotor's CLI, API or timeout policy),
    or `expiry` (this service's expire_after)."""
    if approval.expired:
        return "expiry"
    return "slack" if approval.decided_by else "outside_slack"


def edit_of(approval: Approval) -> str | None:
    """`superseded by <job>` on an edited original, `edited from <job> by <person>` on the
    corrected job; None for the rest."""
    edit = approval.edit or {}
    if "from" in edit:
        return f"edited from {edit.get('from_job')} by {edit.get('by')}"
    if edit.get("outcome") == "superseded":
        return f"superseded by {edit['job']}"
    return None


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def row(approval: Approval, votes: list[tuple[str, datetime]]) -> dict:
    return {
        "approval_id": approval.id,
        "queue": approval.queue_name,
        "job_id": approval.job_id,
        "outcome": outcome(approval),
        "decided_in": decided_in(approval),
        "rule": (approval.rules or {}).get("rule"),  # the [[queues.rules]] that applied
        "edit": edit_of(approval),
        "decided_by": approval.decided_by,
        "approvers": [{"user": user, "at": _time(at)} for user, at in votes],
        "reason": approval.reason,
        "requester": approval.requester,
        "requested_at": _time(approval.created_at),
        "decided_at": _time(approval.decided_at),
    }


def as_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def as_csv(rows: list[dict]) -> str:
    """Approvers as `user@time` separated by spaces; cells that a spreadsheet would run as a
    formula are prefixed with a quote (reasons and job ids come from outside). Every cell is
    quoted: a bare carriage return would otherwise end the row in a reader (csv quotes only
    the characters of its own line end, "\n")."""
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for r in rows:
        flat = dict(r, approvers=" ".join(f"{a['user']}@{a['at']}" for a in r["approvers"]))
        writer.writerow({k: _cell(v) for k, v in flat.items()})
    return out.getvalue()


# A spreadsheet skips leading whitespace (a space, NBSP, tab, line break) and invisible
# characters before it looks for a formula's first character.
_FORMULA = re.compile(r"[\s\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*+[=+\-@]")


def _cell(value: object) -> object:
    if isinstance(value, str) and (_FORMULA.match(value) or value[:1] in ("\t", "\r")):
        return "'" + value
    return value
