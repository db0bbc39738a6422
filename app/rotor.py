"""Typed client for the Rotor approvals API.

RotorError                 Rotor could not be reached or answered something unusable
 ├── RotorUnavailable      connection failure, timeout, 429 or 5xx: worth trying again
 ├── RotorConflict         409: the approval is no longer pending
 └── RotorNotFound         404: Rotor does not know the approval
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.retry import backoff

APPROVAL_ID_PATTERN = r"^apv_[0-9a-f]{32}$"

M = TypeVar("M", bound=BaseModel)


class RotorApproval(BaseModel):
    """An approval as Rotor documents it (camelCase); extra fields are accepted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(pattern=APPROVAL_ID_PATTERN)
    job_id: str = Field(alias="jobId")
    queue_name: str = Field(alias="queueName")
    payload: Any = None
    status: str
    created_at: datetime | None = Field(default=None, alias="createdAt")
    reason: str | None = None
    decided_by: str | None = Field(default=None, alias="decidedBy")


class ApprovalPage(BaseModel):
    approvals: list[RotorApproval]
    next_cursor: str | None = Field(default=None, alias="nextCursor")
    # Items Rotor listed that are not approvals as documented (bad id, missing fields): skipped.
    skipped: int = 0

    @classmethod
    def lenient(cls, body: Any) -> ApprovalPage:
        """One malformed item must not hide the rest of the page."""
        if not isinstance(body, dict) or not isinstance(body.get("approvals"), list):
            return _parse(cls, body)  # the page itself is malformed: say so
        good, skipped = [], 0
        for item in body["approvals"]:
            try:
                good.append(RotorApproval.model_validate(item))
            except ValidationError:
                skipped += 1
        cursor = body.get("nextCursor")
        return cls(
            approvals=good, nextCursor=cursor if isinstance(cursor, str) else None, skipped=skipped
        )


class RotorError(Exception):
    """Rotor could not be reached or answered something unusable."""


class RotorUnavailable(RotorError):
    """Connection failure, timeout or 5xx: worth trying again later."""


class RotorConflict(RotorError):
    """The approval is no longer pending."""


class RotorNotFound(RotorError):
    pass


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
    ) -> None:
        self._retries = retries
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

    async def list_approvals(
        self,
        status: str | None = None,
        queue: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ApprovalPage:
        params = {"status": status, "queue": queue, "limit": limit, "cursor": cursor}
        body = await self._call("GET", "/v1/approvals", params=_without_none(params))
        return ApprovalPage.lenient(body)

    async def get_approval(self, approval_id: str) -> RotorApproval:
        return _parse(RotorApproval, await self._call("GET", _approval_path(approval_id)))

    async def approve(self, approval_id: str) -> None:
        await self._decide(approval_id, "approve", "approved", None)

    async def reject(self, approval_id: str, reason: str) -> None:
        await self._decide(approval_id, "reject", "rejected", {"reason": reason})

    async def _decide(self, approval_id: str, verb: str, status: str, body: Any) -> None:
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
            except RotorUnavailable:
                if attempt == self._retries:
                    raise
                await asyncio.sleep(backoff(attempt + 1, base=0.25, cap=2.0))

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self._retries + 1):
            try:
                return await self._once(method, path, **kwargs)
            except RotorUnavailable:
                if attempt == self._retries:
                    raise
                await asyncio.sleep(backoff(attempt + 1, base=0.25, cap=2.0))

    async def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise RotorUnavailable("Rotor did not answer in time") from None
        except httpx.TransportError as e:
            raise RotorUnavailable(f"Rotor is unreachable ({type(e).__name__})") from None
        status = response.status_code
        if status == 409:
            raise RotorConflict("the approval is no longer pending")
        if status == 404:
            raise RotorNotFound("Rotor does not know this approval")
        if status in (401, 403):
            raise RotorError(f"Rotor refused the API key (HTTP {status})")
        if status == 429 or status >= 500:
            raise RotorUnavailable(f"Rotor answered HTTP {status}")
        if status >= 400:
            raise RotorError(f"Rotor answered HTTP {status}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RotorError("Rotor answered with something that is not JSON") from None


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
