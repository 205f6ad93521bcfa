"""Time helpers: everything is timezone-aware UTC inside the platform."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_clock: ContextVar[Callable[[], datetime] | None] = ContextVar("omni_clock", default=None)


def utcnow() -> datetime:
    """Now, in UTC; or the time of the clock installed by :func:`clock` in this context."""
    override = _clock.get()
    return datetime.now(UTC) if override is None else override()


@contextmanager
def clock(source: Callable[[], datetime]) -> Iterator[None]:
    """Let every service read ``source()`` as the time within the block (demo data, replays, tests)."""
    token = _clock.set(source)
    try:
        yield
    finally:
        _clock.reset(token)


def parse_ts(value: object) -> datetime | None:
    """Parse an ISO-8601 timestamp (as the Segment SDKs send it) into aware UTC; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError("not an ISO-8601 string")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
