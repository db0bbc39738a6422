"""Typed client for the Rotor approvals API, as Rotor documents it.

RotorError                 Rotor could not be reached or answered something unusable; carries
 │                         Rotor's error `code` and `message` when it sent its error shape
 ├── RotorUnavailable      connection failure, timeout or 5xx: worth trying again
 │    └── RotorRateLimited 429, or this deployment's budget is spent: not before `retry_after`
 ├── RotorConflict         409: the approval is no longer pending
 ├── RotorNotFound         404: Rotor does not know the approval
 └── RotorUnreadable       the approval holds what this service cannot read or store

Every call draws on the workspace's rate limit through a `RotorBudget` shared by the replicas
(app.db.budget): a client for people books the next slot, a `background()` one only takes a
slot that is free. A 429 pushes every slot past its Retry-After; it is never retried at once.

Rotor's answers are read with `app.storable.loads`, so a page is read item by item: an approval
whose payload nests too deep or holds a number no database stores, or whose fields are not as
documented, is set aside and reported once (`UnreadableItems`); the rest of the page proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app import metrics, storable
from app.db.models import Status
from app.errors import DatabaseUnavailable
from app.retry import backoff
from app.storable import CleanText, Text

if TYPE_CHECKING:
    from app.db.budget import RotorBudget

APPROVAL_ID_PATTERN = r"^apv_[0-9a-f]{32}$"
DEFAULT_RETRY_AFTER = 60.0  # Rotor's 429 without a Retry-After: back off a minute
PEOPLE_PATIENCE = 5.0  # a click waits this long for the budget, then is told to try again
MAX_TEXT = 200  # of Rotor's error code and message, kept for logs and Slack

M = TypeVar("M", bound=BaseModel)
UNREADABLE_KEPT = 1000  # approval ids remembered as reported (and shown by /readyz: the latest)

log = logging.getLogger(__name__)


class RotorApproval(BaseModel):
    """An approval as Rotor documents it (camelCase); extra fields are accepted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(pattern=APPROVAL_ID_PATTERN)
    job_id: Text = Field(alias="jobId")
    queue_name: Text = Field(alias="queueName")
    payload: Any = None
    status: Status  # another status is not one Rotor documents: the item is unreadable
    created_at: datetime | None = Field(default=None, alias="createdAt")
    reason: CleanText | None = None
    decided_by: str | None = Field(default=None, alias="decidedBy")


class RotorJob(BaseModel):
    """A job as the enqueue call answers it: `{"id", "state", "tags"}` (extra fields kept)."""

    model_config = ConfigDict(extra="allow")

    id: Text
    state: str | None = None
    tags: list[str] = []


def read_approval(item: Any) -> RotorApproval | tuple[str | None, str]:
    """One approval as Rotor sent it, or (its id if it has one, why it cannot be read)."""
    approval_id = item.get("id") if isinstance(item, dict) else None
    if not (isinstance(approval_id, str) and re.fullmatch(APPROVAL_ID_PATTERN, approval_id)):
        approval_id = None
    if isinstance(item, dict) and (why := storable.unreadable_in(item.get("payload"))):
        return approval_id, f"payload: {why}"
    try:
        return RotorApproval.model_validate(item)
    except ValidationError as e:
        first = e.errors()[0]  # its message names the field, never the value
        where = ".".join(str(p) for p in first["loc"]) or "item"
        return approval_id, f"{where}: {first['msg']}"


class ApprovalPage(BaseModel):
    approvals: list[RotorApproval]
    next_cursor: str | None = Field(default=None, alias="nextCursor")
    # Items Rotor listed that cannot be read: (approval id or None, why). Skipped.
    unreadable: list[tuple[str | None, str]] = []

    @classmethod
    def lenient(cls, body: Any) -> ApprovalPage:
        """One malformed item must not hide the rest of the page."""
        if not isinstance(body, dict) or not isinstance(body.get("approvals"), list):
            return _parse(cls, body)  # the page itself is malformed: say so
        good: list[RotorApproval] = []
        bad: list[tuple[str | None, str]] = []
        for item in body["approvals"]:
            read = read_approval(item)
            if isinstance(read, RotorApproval):
                good.append(read)
            else:
                bad.append(read)
        cursor = body.get("nextCursor")
        return cls(
            approvals=good, nextCursor=cursor if isinstance(cursor, str) else None, unreadable=bad
        )


class UnreadableItems:
    """Approvals Rotor listed that cannot be read: each is reported once (a log line with its
    id and why, never a value; a metric), and `/readyz` shows the latest as detail."""

    def __init__(self) -> None:
        self._reported: dict[str, str] = {}  # approval id -> why, oldest first
        self.count = 0

    def report(self, approval_id: str | None, why: str) -> None:
        key = approval_id or "an item without an approval id"
        if key in self._reported:
            return
        if len(self._reported) >= UNREADABLE_KEPT:
            del self._reported[next(iter(self._reported))]
        self._reported[key] = why
        self.count += 1
        metrics.ROTOR_UNREADABLE.inc()
        log.warning(
            "rotor: an approval cannot be read, skipped: %s", why, extra={"approval_id": key}
        )

    def detail(self) -> dict[str, Any] | None:
        """For /readyz: how many were reported, and the latest few ids with why."""
        if not self.count:
            return None
        latest = list(self._reported.items())[-10:]
        return {"count": self.count, "latest": [{"id": i, "why": w} for i, w in latest]}


class RotorError(Exception):
    """Rotor could not be reached or answered something unusable."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class RotorUnavailable(RotorError):
    """Connection failure, timeout or 5xx: worth trying again later."""


class RotorRateLimited(RotorUnavailable):
    """Over the workspace's rate limit: no call before `retry_after` seconds."""

    def __init__(self, retry_after: float, code: str | None = None) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            f"Rotor's rate limit for this workspace is used up; try again in {seconds} s", code
        )
        self.retry_after = retry_after


class RotorConflict(RotorError):
    """The approval is no longer pending."""


class RotorNotFound(RotorError):
    pass


class RotorUnreadable(RotorError):
    """The approval holds what this service cannot read or store (reported once already)."""


class RotorClient:
    """Transient faults (connection errors, timeouts, 429, 5xx) are retried with backoff.

    Use as `async with RotorClient(...) as rotor:`, or call `close()` when done.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 10.0,
        retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: RotorBudget | None = None,
    ) -> None:
        self._retries, self._budget, self._background = retries, budget, False
        self.unreadable = UnreadableItems()  # shared with the background() copy
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "rotor-slack"},
            timeout=timeout,
            transport=transport,
            # Rotor is reached directly; a proxy from the environment is not ours to use.
            trust_env=False,
        )

    async def __aenter__(self) -> RotorClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def background(self) -> RotorClient:
        """The same client for work no person waits on: it gives way to people's calls."""
        other = copy.copy(self)
        other._background = True
        return other

    async def list_approvals(
        self,
        status: Status | None = None,
        queue: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ApprovalPage:
        params = {"status": status, "queue": queue, "limit": limit, "cursor": cursor}
        body = await self._call("GET", "/v1/approvals", params=_without_none(params))
        page = ApprovalPage.lenient(body)
        for unreadable_id, why in page.unreadable:
            self.unreadable.report(unreadable_id, why)
        return page

    async def get_approval(self, approval_id: str) -> RotorApproval:
        body = await self._call("GET", _approval_path(approval_id))
        read = read_approval(body)
        if isinstance(read, RotorApproval):
            return read
        if read[0] is None:  # not an approval at all
            return _parse(RotorApproval, body)
        self.unreadable.report(*read)
        raise RotorUnreadable(f"the approval cannot be read: {read[1]}")

    async def enqueue(self, queue: str, payload: Any, tags: list[str], job_id: str) -> RotorJob:
        """`POST /v1/queues/{queue}/jobs`. Rotor ignores a `job_id` it knows already, so a
        retry enqueues nothing twice."""
        body = {"payload": payload, "tags": tags, "jobId": job_id}
        path = f"/v1/queues/{quote(queue, safe='')}/jobs"
        return _parse(RotorJob, await self._call("POST", path, json=body))

    async def job(self, queue: str, job_id: str) -> RotorJob | None:
        """`GET /v1/queues/{queue}/jobs/{id}`; None when Rotor has no such job."""
        path = f"/v1/queues/{quote(queue, safe='')}/jobs/{quote(job_id, safe='')}"
        try:
            return _parse(RotorJob, await self._call("GET", path))
        except RotorNotFound:
            return None

    async def approve(self, approval_id: str) -> None:
        await self._decide(approval_id, "approve", Status.APPROVED, None)

    async def reject(self, approval_id: str, reason: str) -> None:
        await self._decide(approval_id, "reject", Status.REJECTED, {"reason": reason})

    async def _decide(self, approval_id: str, verb: str, status: Status, body: Any) -> None:
        path = f"{_approval_path(approval_id)}/{verb}"
        for attempt in range(self._retries + 1):
            try:
                await self._once("POST", path, json=body)
                return
            except RotorConflict:
                # After a retry, a 409 may be our own first try having gone through.
                if attempt and (await self.get_approval(approval_id)).status == status:
                    return
                raise
            except RotorUnavailable as e:
                if attempt == self._retries or isinstance(e, RotorRateLimited):
                    raise
                await asyncio.sleep(backoff(attempt + 1, base=0.25, cap=2.0))

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self._retries + 1):
            try:
                return await self._once(method, path, **kwargs)
            except RotorUnavailable as e:
                if attempt == self._retries or isinstance(e, RotorRateLimited):
                    raise
                await asyncio.sleep(backoff(attempt + 1, base=0.25, cap=2.0))

    async def _wait_for_budget(self) -> None:
        """Wait for a slot of the rate budget. Without the database to share it through, the
        call goes ahead (Rotor's own 429 still holds it back): a decision Rotor can take must
        not fail for want of our bookkeeping."""
        if self._budget is None:
            return
        with contextlib.suppress(DatabaseUnavailable):
            await self._take_slot()

    async def _take_slot(self) -> None:
        assert self._budget is not None
        priority = "background" if self._background else "people"
        waited = 0.0
        if self._background:
            while (free_in := await self._budget.take_free()) is not None:
                await asyncio.sleep(free_in)
                waited += free_in
        else:
            waited = max(0.0, await self._budget.book())
            if waited > PEOPLE_PATIENCE:
                metrics.ROTOR_BUDGET_WAITS.labels(priority=priority).inc()
                raise RotorRateLimited(waited)
            await asyncio.sleep(waited)
        if waited:
            metrics.ROTOR_BUDGET_WAITS.labels(priority=priority).inc()
            metrics.ROTOR_BUDGET_WAITED.labels(priority=priority).inc(waited)

    async def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        await self._wait_for_budget()
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise RotorUnavailable("Rotor did not answer in time") from None
        except httpx.TransportError as e:
            raise RotorUnavailable(f"Rotor is unreachable ({type(e).__name__})") from None
        status = response.status_code
        if status < 400:
            return _json(response)
        code, message = error_of(response)
        words = said(code, message)
        if status == 429:
            metrics.ROTOR_RATE_LIMITED.inc()
            retry_after = retry_after_of(response)
            if self._budget is not None:
                with contextlib.suppress(DatabaseUnavailable):
                    await self._budget.push(retry_after)
            raise RotorRateLimited(retry_after, code)
        if status == 409:
            raise RotorConflict(f"the approval is no longer pending{words}", code)
        if status == 404:
            raise RotorNotFound(f"Rotor does not know this approval{words}", code)
        if status == 401 or (status == 403 and code is None):
            raise RotorError(f"Rotor refused the API key (HTTP {status}{words})", code)
        if status >= 500:
            raise RotorUnavailable(f"Rotor answered HTTP {status}{words}", code)
        raise RotorError(f"Rotor answered HTTP {status}{words}", code)


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return storable.loads(response.content)  # bad values become markers, item by item
    except ValueError:
        raise RotorError("Rotor answered with something that is not JSON") from None


def error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """Rotor's documented error shape `{"error": {"code", "message", "details"}}`: the code and
    message, clipped and on one line (they reach logs and Slack); None for what is missing."""
    try:
        error = storable.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return None, None
    if isinstance(error, str):  # tolerated: a bare message
        return None, _clean(error) or None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        (_clean(code) or None) if isinstance(code, str) else None,
        (_clean(message) or None) if isinstance(message, str) else None,
    )


def said(code: str | None, message: str | None) -> str:
    """What Rotor said, to append to our own words: `: CODE: message`."""
    return "".join(f": {part}" for part in (code, message) if part)


def retry_after_of(response: httpx.Response) -> float:
    """Seconds from a 429's Retry-After (a minute when absent or unreadable; at most an hour)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 1.0), 3600.0)


def _clean(text: str) -> str:
    """Rotor's text fit for one log line or a Slack notice: printable, one line, clipped."""
    flat = "".join(c if c.isprintable() else " " for c in text[: MAX_TEXT * 2])
    return " ".join(flat.split())[:MAX_TEXT]


def _approval_path(approval_id: str) -> str:
    """Only a real approval id goes into a URL path (never `../` or a query)."""
    if not isinstance(approval_id, str) or not re.fullmatch(APPROVAL_ID_PATTERN, approval_id):
        raise RotorNotFound("not an approval id")
    return f"/v1/approvals/{approval_id}"


def _without_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _parse(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise RotorError(f"Rotor answered an unexpected shape: {e.errors()[0]['msg']}") from None
