"""The `/approvals` command's words: parsing and help (text, not Block Kit)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from app.db.models import Status

HELP = (
    "*/approvals* lists Rotor approvals.\n"
    "• `/approvals` — pending approvals, newest first\n"
    "• `/approvals approved` or `/approvals rejected` — decided ones\n"
    "• `/approvals pending payments` — only the queue `payments`\n"
    "• `/approvals mine` — what waits on you, as on the app's Home tab (`mine payments` too)\n"
    "Pending ones have Approve / Reject buttons; *More* shows the next page."
)
STATUSES = tuple(Status)
MINE = "mine"
MAX_TEXT = 200  # longer than any status and queue name together: answered with HELP


@dataclass(frozen=True)
class ListQuery:
    status: str = Status.PENDING
    queue: str | None = None
    mine: bool = False  # what waits on the person asking


def parse_list_command(text: str) -> ListQuery | None:
    """`[pending|approved|rejected|mine] [queue]` in any order; None for help or bad input."""
    if len(text) > MAX_TEXT:
        return None
    words = text.split()
    mine = any(w.lower() == MINE for w in words)
    status = next((w.lower() for w in words if w.lower() in STATUSES), None)
    rest = [w for w in words if w.lower() not in (*STATUSES, MINE)]
    if (
        len(rest) > 1
        or (rest and rest[0].lower() == "help")
        or (mine and status not in (None, Status.PENDING))
    ):
        return None
    return ListQuery(status=status or Status.PENDING, queue=rest[0] if rest else None, mine=mine)


def looks_like_status(word: str) -> bool:
    """A typo of a status (`rejcted`, `aproved`), not a queue name."""
    return bool(difflib.get_close_matches(word.lower(), STATUSES, n=1, cutoff=0.75))


def unknown_word(word: str) -> str:
    from app.slack.blocks.text import code

    return f"{code(word, 100)} is neither a status nor a queue I know.\n\n{HELP}"
