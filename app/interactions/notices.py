"""What the person who clicked is told when a decision did not happen (mrkdwn). Pure.
Text from outside (Rotor's details, a reason) is on one line or quoted, never a line that
could pass for one of ours, and clipped after escaping."""

from __future__ import annotations

from app import errors
from app.slack.blocks.approval import outcome_line
from app.slack.blocks.text import code, inline, mention


def notice(error: Exception) -> str | None:
    """What to tell the person for an error listeners raise; None for one we did not foresee."""
    match error:
        case errors.DatabaseUnavailable():
            return "Cannot reach the database, so nothing was decided. Try again in a minute."
        case errors.RecordingDelayed(verb=verb):
            return (
                f"Rotor took your {verb}, but the database is not answering: the message "
                "will show it as soon as the database is back."
            )
        case errors.ApprovalUnknown(approval_id=approval_id):
            return f"Rotor does not know approval {code(approval_id, 100)}."
        case errors.RotorUnreachable(detail=detail):
            return f"Could not reach Rotor ({inline(detail, 300)}). Nothing changed."
        case errors.NotAnApprover(queue_name=queue, verb=verb, approvers=approvers, channel=ch):
            who = " ".join(mention(a) for a in approvers[:20])
            who = who or (f"the members of <#{ch}>" if ch else "its approvers")
            return (
                f"You are not an approver for {code(queue)}, so you cannot {verb} this job. "
                f"Who can decide: {who}."
            )
        case errors.OwnRequest():
            return "You requested this job, so someone else must approve it."
        case errors.AlreadyVoted(waiting_for=waiting):
            more = "1 more approval" if waiting == 1 else f"{waiting} more approvals"
            return f"You approved already; waiting for {more}."
        case errors.AlreadyDecided(approval=approval):
            return f"Already decided: {outcome_line(approval)}"
        case errors.ClaimHeld(expiring=True):
            return "This approval is expiring right now: it waited longer than its queue allows."
        case errors.ClaimHeld(claimed_by=user):
            return f"<@{user}> is deciding this approval right now."
        case errors.Expired(after=after):
            return (
                f"This approval expired: no decision within {inline(after, 100)}, so it was "
                "rejected as expired. Nothing else was decided."
            )
        case errors.ConfirmationNeeded(path=path):
            return f"Approving this job takes typing its {code(path, 100)}: click Approve again."
        case errors.ConfirmationWrong(path=path):
            return f"That is not this job's {code(path, 100)}. Nothing was decided."
        case errors.EditUnderWay(editor=editor):
            who = f"<@{editor}>'s" if editor else "A"
            return f"{who} correction of this job is on its way: it replaces this one."
        case errors.RotorFailed(verb=verb, detail=detail):
            return f"Could not {verb}: {inline(detail, 300)}. Nothing was decided; try again."
        case errors.DecidedElsewhere(status=status):
            return f"This approval was already *{inline(status, 40)}* outside Slack."
        case errors.StillPending():
            return "Rotor refused the decision; the approval is still pending."
        case errors.ConflictUnverified(detail=detail):
            return f"Rotor says this approval is no longer pending ({inline(detail, 300)})."
    return None
