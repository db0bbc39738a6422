"""The `/approvals` command's words: parsing and help (text, not Block Kit)."""

from __future__ import annotations

from dataclasses import dataclass

from app.db.models import Status

HELP = (
    "*/approvals* lists Rotor approvals.\n"
    "• `/approvals` — pending approvals, newest first\n"
    "• `/approvals approved` or `/approvals rejected` — decided ones\n"
    "• `/approvals pending payments` — only the queue `payments`\n"
    "Pending ones have Approve / Reject buttons; *More* shows the next page."
)
STATUSES = tuple(Status)


@dataclass(frozen=True)
class ListQuery:
    status: str = Status.PENDING
    queue: str | None = None


def parse_list_command(text: str) -> ListQuery | None:
    """`[pending|approved|rejected] [queue]` in any order; None for help or bad input."""
    words = text.split()
    status = next((w.lower() for w in words if w.lower() in STATUSES), None)
    rest = [w for w in words if w.lower() not in STATUSES]
    if len(rest) > 1 or (rest and rest[0].lower() == "help"):
        return None
    return ListQuery(status=status or Status.PENDING, queue=rest[0] if rest else None)
