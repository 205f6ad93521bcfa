"""Ingestion: resolve each message's identifiers to a profile and append it to the timeline.

One transaction per batch. Identity resolution must see a stable graph, so batches take the
identity lock (a PostgreSQL advisory lock; SQLite's write lock) for their short database part;
parsing and validation happen before, outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.errors import TooBusy
from omnijourney.customers.resolution import resolve_messages
from omnijourney.db import advisory_lock, bulk_insert, select_pairs
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event

IDENTITY_LOCK = 7_100_001  # advisory lock key of identity resolution
LOCK_TIMEOUT = "10s"


@dataclass(slots=True)
class IngestResult:
    accepted: int  # newly stored
    duplicates: int  # already stored (same source and messageId): acknowledged, stored once


def take_identity_lock(session: Session) -> None:
    """Serialise identity resolution; a wait longer than ``LOCK_TIMEOUT`` becomes a 429."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        try:
            advisory_lock(session, IDENTITY_LOCK)
        except OperationalError as exc:
            raise TooBusy("ingestion is saturated; retry shortly", retry_after=2) from exc
        session.execute(text("SET LOCAL lock_timeout = 0"))


def ingest(session: Session, *, messages: Sequence[Message], settings: IdentitySettings) -> IngestResult:
    """Store ``messages`` (already validated), idempotent on (source, messageId), profiles resolved."""
    take_identity_lock(session)
    fresh = _without_duplicates(session, messages)
    customer_ids = resolve_messages(session, fresh, settings)
    if fresh:
        bulk_insert(session, Event.__table__, [
            {"source_id": m.source_id, "message_id": m.message_id, "type": m.type, "event": m.event,
             "customer_id": cid, "user_id": m.user_id, "anonymous_id": m.anonymous_id, "channel": m.channel,
             "store_code": m.store_code, "timestamp": m.timestamp, "original_timestamp": m.original_timestamp,
             "sent_at": m.sent_at, "received_at": m.received_at, "properties": m.properties, "traits": m.traits,
             "context": m.context or None}
            for m, cid in zip(fresh, customer_ids, strict=True)
        ])
    return IngestResult(accepted=len(fresh), duplicates=len(messages) - len(fresh))


def _without_duplicates(session: Session, messages: Sequence[Message]) -> list[Message]:
    """Drop messages already stored, and repeats within the batch (first one kept)."""
    keys = [(m.source_id, m.message_id) for m in messages if m.source_id is not None]
    rows = select_pairs(session, "SELECT e.source_id, e.message_id FROM events e "
                                 "JOIN p ON e.source_id = p.a AND e.message_id = p.b", list(set(keys)))
    stored: set[tuple[str | None, str]] = {(r[0], r[1]) for r in rows}
    fresh: list[Message] = []
    for m in messages:
        key = (m.source_id, m.message_id)
        if key in stored:
            continue
        if m.source_id is not None:
            stored.add(key)
        fresh.append(m)
    return fresh
