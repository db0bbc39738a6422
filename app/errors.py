"""The domain's errors. They carry data, not text; `app.interactions.notices` says each to the
person who clicked.

    DatabaseUnavailable      the database cannot be reached or cannot write (raised by app.db)
    DatabaseRefused          the database refused a value from outside (raised by app.db)
    RecordingDelayed         Rotor decided, the database will record it once it answers
    DecisionRefused          nothing was decided by this click, and why
     ├── ApprovalUnknown     Rotor does not know the approval id
     ├── RotorUnreachable    Rotor failed while loading the approval; nothing changed
     ├── NotAnApprover       the person is not on the queue's approver list
     ├── OwnRequest          the person asked for this job: someone else must approve it
     ├── AlreadyVoted        the person approved already; the quorum waits for others
     ├── AlreadyDecided      the approval is no longer pending here
     ├── ClaimHeld           someone else's click is deciding it right now
     ├── Expired             it waited past its queue's expire_after: rejected as expired now
     ├── ConfirmationNeeded  a step-up rule: approving takes typing a payload value
     ├── ConfirmationWrong   the value typed is not the payload's
     ├── EditUnderWay        someone's correction of it is being carried out
     ├── RotorFailed         Rotor failed the decision; the claim was released
     ├── DecidedElsewhere    Rotor answered 409: decided outside Slack (recorded)
     ├── StillPending        Rotor answered 409 but still lists it pending
     └── ConflictUnverified  Rotor answered 409 and could not be read back
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.db.models import Approval


class DatabaseUnavailable(Exception):
    """Stopped, unreachable, locked or read-only: a bad day, retried, never a crash."""


class DatabaseRefused(Exception):
    """A value the database cannot store (a NUL, a number out of range): that item is unreadable,
    and trying again cannot help. Its text names the SQLSTATE, never the value."""


class RecordingDelayed(Exception):
    """Rotor took the decision; recording it waits for the database (retried in the background)."""

    def __init__(self, verb: str) -> None:
        super().__init__(verb)
        self.verb = verb


class DecisionRefused(Exception):
    """Nothing was decided by this click; the person is told why."""


class ApprovalUnknown(DecisionRefused):
    def __init__(self, approval_id: str) -> None:
        super().__init__(approval_id)
        self.approval_id = approval_id


class RotorUnreachable(DecisionRefused):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAnApprover(DecisionRefused):
    def __init__(
        self,
        queue_name: str,
        verb: str,
        approvers: list[str] | None = None,
        channel: str | None = None,
    ) -> None:
        super().__init__(queue_name, verb)
        self.queue_name, self.verb = queue_name, verb
        self.approvers = approvers or []  # user and user-group ids who may decide
        self.channel = channel  # with no approvers: its members decide


class OwnRequest(DecisionRefused):
    pass


class AlreadyVoted(DecisionRefused):
    def __init__(self, waiting_for: int) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for


class AlreadyDecided(DecisionRefused):
    def __init__(self, approval: Approval) -> None:
        super().__init__(approval.id)
        self.approval = approval


class ClaimHeld(DecisionRefused):
    def __init__(self, claimed_by: str | None, expiring: bool = False) -> None:
        super().__init__(claimed_by)
        self.claimed_by = claimed_by
        self.expiring = expiring  # the holder is the expiry sweep, not a person


class Expired(DecisionRefused):
    def __init__(self, after: str) -> None:
        super().__init__(after)
        self.after = after  # as the policy writes it: 6h


class ConfirmationNeeded(DecisionRefused):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path  # the payload path to type


class ConfirmationWrong(DecisionRefused):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class EditUnderWay(DecisionRefused):
    def __init__(self, editor: str | None) -> None:
        super().__init__(editor)
        self.editor = editor


class RotorFailed(DecisionRefused):
    def __init__(self, verb: str, detail: str) -> None:
        super().__init__(verb, detail)
        self.verb, self.detail = verb, detail


class DecidedElsewhere(DecisionRefused):
    def __init__(self, status: str) -> None:  # Rotor's status, as it said it
        super().__init__(status)
        self.status = status


class StillPending(DecisionRefused):
    pass


class ConflictUnverified(DecisionRefused):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
