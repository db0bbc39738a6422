"""The service's clock: UTC now, which the sandbox can move forward to show reminders."""

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    return datetime.now(UTC) + _offset


def advance(delta: timedelta) -> None:
    """Only the sandbox calls this: the service runs in its process."""
    global _offset
    _offset += delta


def offset() -> timedelta:
    return _offset
