"""Ingestion: resolve each message's identifiers to a profile and append it to the timeline.

One transaction per batch. Identity resolution must see a stable graph, so batches take the
identity lock (a PostgreSQL advisory lock; SQLite's write lock) for their database part. Everything
that needs no database — extracting identifiers, serialising the event rows — happens before, in
:func:`prepare`, so concurrent requests overlap their Python work and queue only for the short
locked part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from omnijourney import models as _all_domains  # noqa: F401  (merge handlers of every domain)
from omnijourney.config import IdentitySettings
from omnijourney.core.errors import TooBusy
from omnijourney.customers.identifiers import Identifier
from omnijourney.customers.resolution import extractor_for, message_identifiers, resolve_messages
from omnijourney.db import advisory_lock, copy_lines, copy_row, json_text, select_pairs, sqlite_time, write_rows
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event

IDENTITY_LOCK = 7_100_001  # advisory lock key of identity resolution
LOCK_TIMEOUT = "10s"


@dataclass(slots=True)
class IngestResult:
    accepted: int  # newly stored
    duplicates: int  # already stored (same source and messageId): acknowledged, stored once
    stored: set[tuple[str | None, str]]  # (source_id, message_id) of the newly stored


@dataclass(slots=True)
class PreparedBatch:
    """Messages with their identifiers and encoded event rows (``customer_id`` still to come)."""

    messages: list[Message]
    identifiers: list[list[Identifier]]
    columns: list[str]
    rows: list[tuple[Any, ...]] | list[str]  # driver tuples; on PostgreSQL COPY text lines less customer_id
    dialect: str


def prepare(messages: Sequence[Message], settings: IdentitySettings, dialect: str) -> PreparedBatch:
    """The database-free part of ingestion; call it outside the transaction."""
    seen: set[tuple[str | None, str]] = set()
    unique: list[Message] = []
    for m in messages:  # a message repeated within one batch is stored once
        key = (m.source_id, m.message_id)
        if m.source_id is None or key not in seen:
            seen.add(key)
            unique.append(m)
    ex = extractor_for(settings)
    if dialect == "postgresql":
        rows: list[Any] = [_copy_line(m) for m in unique]
    else:
        json, when = json_text, sqlite_time
        rows = [
            (m.source_id, m.message_id, m.type, m.event, m.user_id, m.anonymous_id, m.previous_id, m.group_id,
             m.channel, m.store_code, when(m.timestamp), when(m.original_timestamp), when(m.sent_at),
             when(m.received_at), json(m.properties), json(m.traits), json(m.context or None))
            for m in unique
        ]
    return PreparedBatch(unique, [message_identifiers(ex, m) for m in unique], EVENT_COLUMNS, rows, dialect)


NULL = "\\N"


def _text(v: str | None) -> str:
    if v is None:
        return NULL
    if "\\" in v or "\t" in v or "\n" in v or "\r" in v:
        return copy_row((v,))
    return v


def _time(v: datetime | None) -> str:
    return NULL if v is None else v.isoformat()


def _json(v: Any) -> str:
    if v is None:
        return NULL
    out = orjson.dumps(v).decode()
    return copy_row((out,)) if "\\" in out else out  # orjson escapes control characters, not backslashes


def _copy_line(m: Message) -> str:
    """The event's COPY text line, less ``customer_id`` (about 3 us; the generic :func:`copy_row` takes 5)."""
    t = _text
    return "\t".join((
        t(m.source_id), t(m.message_id), m.type, t(m.event), t(m.user_id), t(m.anonymous_id), t(m.previous_id),
        t(m.group_id), m.channel, t(m.store_code), m.timestamp.isoformat(), _time(m.original_timestamp),
        _time(m.sent_at), m.received_at.isoformat(), _json(m.properties), _json(m.traits), _json(m.context or None),
        "",
    ))


EVENT_COLUMNS = ["source_id", "message_id", "type", "event", "user_id", "anonymous_id", "previous_id", "group_id",
                 "channel", "store_code",
                 "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context"]


def take_identity_lock(session: Session) -> None:
    """Serialise identity resolution; a wait longer than ``LOCK_TIMEOUT`` becomes a 429."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        try:
            advisory_lock(session, IDENTITY_LOCK)
        except OperationalError as exc:
            raise TooBusy("ingestion is saturated; retry shortly", retry_after=2) from exc
        session.execute(text("SET LOCAL lock_timeout = 0"))


def ingest(session: Session, *, messages: Sequence[Message] | PreparedBatch,
           settings: IdentitySettings) -> IngestResult:
    """Store validated messages, idempotent on (source, messageId), with their profiles resolved."""
    dialect = session.get_bind().dialect.name
    batch = messages if isinstance(messages, PreparedBatch) else prepare(messages, settings, dialect)
    total = len(messages.messages) if isinstance(messages, PreparedBatch) else len(messages)
    take_identity_lock(session)
    keep = not_stored(session, batch.messages)
    fresh = [m for m, k in zip(batch.messages, keep, strict=True) if k]
    idents = [i for i, k in zip(batch.identifiers, keep, strict=True) if k]
    customer_ids = resolve_messages(session, fresh, idents, settings)
    rows = [r for r, k in zip(batch.rows, keep, strict=True) if k]
    columns = [*batch.columns, "customer_id"]
    if batch.dialect == "postgresql":
        copy_lines(session, Event.__table__, columns,
                   "".join(f"{r}{cid or NULL}\n" for r, cid in zip(rows, customer_ids, strict=True)))
    else:
        write_rows(session, Event.__table__, columns, [(*r, cid) for r, cid in zip(rows, customer_ids, strict=True)])
    return IngestResult(accepted=len(fresh), duplicates=total - len(fresh),
                        stored={(m.source_id, m.message_id) for m in fresh})


def not_stored(session: Session, messages: Sequence[Message]) -> list[bool]:
    """For each message: True unless the same (source, messageId) is already stored."""
    keys = list({(m.source_id, m.message_id) for m in messages if m.source_id is not None})
    rows = select_pairs(session, "SELECT e.source_id, e.message_id FROM events e "
                                 "JOIN p ON e.source_id = p.a AND e.message_id = p.b", keys)
    stored = {(r[0], r[1]) for r in rows}
    return [(m.source_id, m.message_id) not in stored for m in messages]
