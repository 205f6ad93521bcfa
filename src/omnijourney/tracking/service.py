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
from omnijourney.customers.resolution import IDENTITY_LOCK, extractor_for, message_identifiers, resolve_messages
from omnijourney.db import EncodedRows, advisory_lock, copy_escape, insert_encoded, json_text, select_pairs, sqlite_time
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event

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
    keys: set[Key]  # (source, messageId) of the messages that have a source
    received: int  # messages given, repeats within the batch included

    def without(self, stored: set[Key]) -> tuple[list[Message], list[list[Identifier]], list[Any]]:
        """Messages, identifiers and rows, less the messages whose keys are in ``stored``."""
        if not stored:
            return self.messages, self.identifiers, self.rows
        keep = [(m.source_id, m.message_id) not in stored for m in self.messages]
        return ([m for m, k in zip(self.messages, keep, strict=True) if k],
                [i for i, k in zip(self.identifiers, keep, strict=True) if k],
                [r for r, k in zip(self.rows, keep, strict=True) if k])


Key = tuple[str | None, str]


def prepare(messages: Sequence[Message], settings: IdentitySettings, dialect: str) -> PreparedBatch:
    """The database-free part of ingestion; call it outside the transaction."""
    seen: set[Key] = set()
    unique: list[Message] = []
    for m in messages:  # a message repeated within one batch is stored once
        if m.source_id is None:
            unique.append(m)  # no source, no idempotency key (domain events carry unique ids)
            continue
        key = (m.source_id, m.message_id)
        if key not in seen:
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
    return PreparedBatch(unique, [message_identifiers(ex, m) for m in unique], EVENT_COLUMNS, rows, dialect, seen,
                         len(messages))


NULL = "\\N"


def _text(v: str | None) -> str:
    return NULL if v is None else copy_escape(v)


def _time(v: datetime | None) -> str:
    return NULL if v is None else v.isoformat()


def _json(v: Any) -> str:
    return NULL if v is None else copy_escape(orjson.dumps(v).decode())


def _copy_line(m: Message) -> str:
    """The event's COPY text line, less ``customer_id``.

    About 2 us instead of the generic :func:`copy_row`'s 5: the text columns are joined as they are,
    then checked once for what COPY would need escaped (rare). NUL stands in for NULL until the check,
    which also sends any real NUL (the parser refuses them) down the slow path.
    """
    values = (m.source_id, m.message_id, m.type, m.event, m.user_id, m.anonymous_id, m.previous_id, m.group_id,
              m.channel, m.store_code)
    head = "\t".join([v if v is not None else "\0" for v in values])
    props = orjson.dumps(m.properties).decode()
    traits = orjson.dumps(m.traits).decode() if m.traits is not None else None
    ctx = orjson.dumps(m.context).decode() if m.context else None
    if ("\\" in head or "\n" in head or "\r" in head or head.count("\t") != 9
            or head.count("\0") != values.count(None) or "\\" in props
            or (traits is not None and "\\" in traits) or (ctx is not None and "\\" in ctx)):
        return _slow_copy_line(m)
    original, sent = m.original_timestamp, m.sent_at
    return "\t".join((
        head.replace("\0", NULL), m.timestamp.isoformat(), original.isoformat() if original else NULL,
        sent.isoformat() if sent else NULL, m.received_at.isoformat(), props, traits or NULL, ctx or NULL, "",
    ))


def _slow_copy_line(m: Message) -> str:
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
    take_identity_lock(session)
    fresh, idents, rows = batch.without(stored_keys(session, batch.keys))
    customer_ids = resolve_messages(session, fresh, idents, settings)
    insert_encoded(session, event_rows(batch.dialect, rows, customer_ids))
    return IngestResult(accepted=len(fresh), duplicates=batch.received - len(fresh),
                        stored={(m.source_id, m.message_id) for m in fresh})


def event_rows(dialect: str, rows: Sequence[Any], customer_ids: Sequence[str | None]) -> EncodedRows:
    """Prepared event rows completed with their profiles, ready for :func:`omnijourney.db.insert_encoded`."""
    columns = [*EVENT_COLUMNS, "customer_id"]
    if dialect == "postgresql":
        return EncodedRows(Event.__table__, columns,
                           "".join([f"{r}{cid or NULL}\n" for r, cid in zip(rows, customer_ids, strict=True)]))
    return EncodedRows(Event.__table__, columns, [(*r, cid) for r, cid in zip(rows, customer_ids, strict=True)])


def stored_keys(session: Session, keys: set[Key]) -> set[Key]:
    """Those (source, messageId) of ``keys`` that are already stored."""
    if session.get_bind().dialect.name == "postgresql":
        # a probe of the unique index per key, whatever the statistics say: with stale ones a join became a
        # hash join against a scan of events
        sql = ("SELECT e.source_id, e.message_id FROM p CROSS JOIN LATERAL (SELECT e.source_id, e.message_id "
               "FROM events e WHERE e.source_id = p.a AND e.message_id = p.b OFFSET 0) e")
    else:
        sql = "SELECT e.source_id, e.message_id FROM events e JOIN p ON e.source_id = p.a AND e.message_id = p.b"
    rows = select_pairs(session, sql, list(keys))
    return {(r[0], r[1]) for r in rows}
