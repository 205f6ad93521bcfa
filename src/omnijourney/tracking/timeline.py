"""The one timeline: how every domain writes what happened to a customer.

Domains call :func:`record` inside their own transaction, so the event commits or rolls back with the change it
describes. Names come from the one registry (``tracking.names``). The event is written for the profile's survivor,
holding its person lock (``omnijourney.locks``): an event written while the profile is being merged ends on the
survivor all the same. Analytics and journeys read the same ``events`` table, incrementally through
``tracking.feed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from omnijourney import locks
from omnijourney.core.channels import CHANNELS
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.tracking import names
from omnijourney.tracking.models import Event

_INSERT = insert(Event.__table__)  # built once: every domain change of a checkout writes events


def record(session: Session, *, customer_id: str | None, event: str, channel: str,
           properties: dict[str, Any] | None = None, anonymous_id: str | None = None,
           user_id: str | None = None, store_code: str | None = None,
           timestamp: datetime | None = None, context: dict[str, Any] | None = None) -> str:
    """Append a domain event (a ``track`` call made by the platform itself); returns its message id."""
    names.check(event)
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if customer_id is not None:
        customer_id = locks.customer(session, customer_id)
    now = utcnow()
    message_id = new_id()
    session.execute(_INSERT, [{
        "source_id": None, "message_id": message_id, "type": "track", "event": event,
        "customer_id": customer_id, "user_id": user_id, "anonymous_id": anonymous_id, "channel": channel,
        "store_code": store_code, "timestamp": timestamp or now, "original_timestamp": None,
        "sent_at": None, "received_at": now, "properties": properties or {}, "traits": None,
        "context": context,
    }])
    return message_id


def record_many(session: Session, *, customer_id: str | None, events: Sequence[tuple[str, dict[str, Any]]],
                channel: str, anonymous_id: str | None = None, store_code: str | None = None,
                timestamp: datetime | None = None) -> list[str]:
    """:func:`record` for several events of one person in one channel (an order placed, paid, completed and
    allocated in one transaction): each name checked against the registry, the person locked once, the events
    written in one ``INSERT`` in the order given. Returns their message ids."""
    for event, _ in events:
        names.check(event)
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if not events:
        return []
    if customer_id is not None:
        customer_id = locks.customer(session, customer_id)
    now = utcnow()
    rows = [{"source_id": None, "message_id": new_id(), "type": "track", "event": event, "customer_id": customer_id,
             "user_id": None, "anonymous_id": anonymous_id, "channel": channel, "store_code": store_code,
             "timestamp": timestamp or now, "original_timestamp": None, "sent_at": None, "received_at": now,
             "properties": properties or {}, "traits": None, "context": None} for event, properties in events]
    session.execute(_INSERT, rows)
    return [r["message_id"] for r in rows]
