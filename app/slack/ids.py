"""What our Block Kit carries back to us: action and callback ids, button values and
private_metadata as models. Whatever comes back is parsed by these models where it is read,
and anything that does not parse is ignored: a forged value is never trusted."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.db.models import Status
from app.rotor import APPROVAL_ID_PATTERN

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


class ActionId(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    VIEW_PAYLOAD = "view_payload"
    LIST_MORE = "list_more"
    OPEN_LINK = "open_link"  # a URL button: Slack opens it, we only ack
    EDIT = "edit"  # opens the edit form

    def on(self, approval_id: str) -> str:
        """The action id of this action's button for one approval (unique within a list)."""
        return f"{self}:{approval_id}"

    def pattern(self) -> re.Pattern:
        """Matches this action's buttons, whatever approval they are for."""
        return re.compile(rf"^{self}:{APPROVAL_ID_PATTERN.strip('^$')}$")


def approval_of(action: dict) -> str | None:
    """The approval a button names: its value, if that is a real approval id and the button's
    action id names the same one (a forged click cannot act on another approval)."""
    value, action_id = action.get("value"), action.get("action_id")
    if not isinstance(value, str) or not isinstance(action_id, str):
        return None
    if not re.fullmatch(APPROVAL_ID_PATTERN, value) or action_id.partition(":")[2] != value:
        return None
    return value


class CallbackId(StrEnum):
    REJECT = "reject_reason"
    CONFIRM = "confirm_approval"  # step-up: type a payload value to approve
    EDIT = "edit_payload"  # edit before approve


REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
REASON_MAX = 3000
CONFIRM_BLOCK, CONFIRM_INPUT = "confirm", "confirm_input"
CONFIRM_MAX = 200
NOTE_BLOCK, VALUE_INPUT = "note", "value"  # the edit form: a block per path, and the note
NOTE_MAX = 500


def edit_block(index: int) -> str:
    """The edit form's block for the `index`-th editable path (unique by construction)."""
    return f"edit-{index}"


class _Carried(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def load(cls, text: str):
        """The model, or None for anything that is not what we put there."""
        try:
            return cls.model_validate_json(text)
        except ValidationError:
            return None


class ListPage(_Carried):
    """A page of `/approvals`: the "More" button's value (the next page), and on each item's
    buttons the page they are on, so a decision there can show the page again, decided."""

    status: Status = Field(alias="s")  # only a status we list goes back to Rotor
    queue: str | None = Field(default=None, alias="q")
    cursor: str | None = Field(default=None, alias="c")
    page: int = Field(default=0, alias="p", ge=0)
    mine: bool = Field(default=False, alias="m")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_defaults=True)

    def on_item(self, approval_id: str) -> str:
        """The block id of an item's buttons, carrying this page when it fits (255)."""
        block_id = f"decide-{approval_id}"
        carried = f"{block_id} {self.dump()}"
        return carried if len(carried) <= 255 else block_id

    @classmethod
    def of_item(cls, block_id: str) -> ListPage | None:
        _, _, carried = block_id.partition(" ")
        return cls.load(carried) if carried else None


class DecisionForm(_Carried):
    """The private_metadata of the reject and confirm modals: which approval, and where to
    answer."""

    id: str = Field(pattern=APPROVAL_ID_PATTERN)
    response_url: str | None = None
    home: bool | None = None  # opened from the Home tab: answer there
    listed: ListPage | None = None  # opened from a `/approvals` page: show it again, decided
