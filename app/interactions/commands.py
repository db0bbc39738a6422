"""The `/approvals` command's words: parsing and help (text, not Block Kit)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from app.db.models import Status
from app.slack.blocks.listing import ListQuery
from app.slack.blocks.text import code

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


def parse_list_command(text: str) -> ListQuery | str:
    """`[pending|approved|rejected|mine] [queue]` in any order; else what to answer (mrkdwn):
    the help, after what was wrong."""
    if len(text) > MAX_TEXT:
        return f"That is longer than any status and queue name together.\n\n{HELP}"
    words = text.split()
    mine = any(w.lower() == MINE for w in words)
    status = next((w.lower() for w in words if w.lower() in STATUSES), None)
    rest = [w for w in words if w.lower() not in (*STATUSES, MINE)]
    if rest and rest[0].lower() == "help":
        return HELP
    if len(rest) > 1:
        extra = code(" ".join(rest), 100)
        return f"Name one queue at most: {extra} is more than one word.\n\n{HELP}"
    if mine and status not in (None, Status.PENDING):
        return f"`mine` lists what waits on you, so only pending ones: no `{status}`.\n\n{HELP}"
    return ListQuery(Status(status or Status.PENDING), rest[0] if rest else None, mine)


def looks_like_status(word: str) -> bool:
    """A typo of a status (`rejcted`, `aproved`), not a queue name."""
    return bool(difflib.get_close_matches(word.lower(), STATUSES, n=1, cutoff=0.75))


def unknown_word(word: str, queues: Sequence[str] = ()) -> str:
    """For a word that is no status and no queue: a close queue name, if there is one."""
    close = difflib.get_close_matches(word, list(queues), n=1, cutoff=0.6)
    guess = f" Did you mean {code(close[0], 100)}?" if close else ""
    return f"{code(word, 100)} is neither a status nor a queue I know.{guess}\n\n{HELP}"
