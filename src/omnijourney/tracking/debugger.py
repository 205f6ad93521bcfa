"""A source's debugger: the messages it had refused, and the events it sent lately.

Segment and RudderStack show the same per source. The tracking API answers a batch 200 even when some of
its messages are refused (an SDK never reads a 200's body), so without this an engineer wiring a channel in
could not see what went wrong, nor check that events arrive.

* Rejections (``rejections``) are written only when a request had some, in one statement and their own
  short transaction outside the identity lock (``tracking/segment_api.py:_record_rejections``), and only
  the latest :data:`REJECTIONS_KEPT` per source are kept.
* Warnings share the table: a row whose ``code`` starts with ``warning_`` is about a message that was
  stored (an event time replaced by the clock-skew rule, an email or phone trait that is not one; see
  ``tracking/segment.py``), written the same way, in the same statement as the request's rejections.
* Events are read from ``events`` without an index of their own (it is the hottest insert path): a page is
  a backward range scan of the primary key over the latest :data:`EVENTS_WINDOW` ids, filtered by source.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from omnijourney.core.cursors import bad_cursor, decode_cursor, encode_cursor
from omnijourney.core.errors import Invalid
from omnijourney.tracking.models import Event, RejectedMessage
from omnijourney.tracking.segment import Rejection, printable
from omnijourney.tracking.sources import get_source

# The latest rejections kept per source: enough to see every kind of fault an integration makes, and a
# bound on the table whatever a misconfigured SDK sends in a loop.
REJECTIONS_KEPT = 1000
# A refused message is kept as received when it is an object of at most this many bytes (as JSON), else as
# its text cut to this size: enough to debug (Segment's messages are mostly well under 2 KB, and the start
# shows the type, ids and event), bounded so 1,000 rejections of 32 KB messages do not make a 32 MB table.
SAMPLE_MAX_BYTES = 2 * 1024
# Events pages look at the latest this many events (by id, all sources together) only; see latest_events.
EVENTS_WINDOW = 100_000
MAX_EVENTS_PAGE = 500
MAX_REJECTIONS_PAGE = 1000

_CUT = " …(cut)"
# For what JSON cannot encode (nesting too deep for orjson): a bounded Python rendering instead.
_REPR = reprlib.Repr()  # Python 3.11 takes no keyword arguments here
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 12, 40, 40, 200, 200


# --- rejections -------------------------------------------------------------------------------------

def sample_of(raw: Any) -> Any:
    """What is kept of a refused message: the object itself when it is one of at most
    :data:`SAMPLE_MAX_BYTES` as JSON, else its JSON text (or, when it cannot be encoded, a bounded
    rendering) cut to that size."""
    try:
        data = orjson.dumps(raw)
    except (orjson.JSONEncodeError, TypeError):
        return _cut(_REPR.repr(raw).encode())
    if isinstance(raw, dict) and len(data) <= SAMPLE_MAX_BYTES:
        return raw
    return _cut(data)


def _cut(data: bytes) -> str:
    if len(data) <= SAMPLE_MAX_BYTES:
        return data.decode("utf-8", "replace")
    # cut on a byte count; a character split in two is dropped
    return data[:SAMPLE_MAX_BYTES - len(_CUT.encode())].decode("utf-8", "ignore") + _CUT


def rejection_rows(source_id: str, at: datetime, rejections: Sequence[Rejection]) -> list[dict[str, Any]]:
    """The ``rejections`` rows of ``rejections`` refused at ``at`` (warnings too: a ``warning_*`` code, the
    message stored); pure, so callers build them before they open a transaction. Within one request, the
    newest id goes to the last message.

    The text columns get what PostgreSQL can store: a refused message's id or field may be the very NUL
    character or half surrogate pair it was refused for, written here as an escape. The sample is JSON
    (``json``, not ``jsonb``: it keeps ``\\u0000`` escapes), or a bounded rendering when orjson cannot write it.
    """
    return [{"source_id": source_id, "at": at, "message_id": _text(r.message_id, 200), "code": r.code[:64],
             "message": printable(r.message), "field": _text(r.field, 200), "sample": sample_of(r.raw)}
            for r in rejections]


def _text(value: str | None, width: int) -> str | None:
    return printable(value)[:width] if value else None


def record_rejections(session: Session, *, source_id: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (all of ``source_id``) in one statement and prune the source to its latest
    :data:`REJECTIONS_KEPT`, set-based, in the caller's transaction; flushes, never commits."""
    if not rows:
        return
    table = RejectedMessage.__table__
    session.execute(insert(table).values(list(rows)))  # one multi-row INSERT, whatever the count
    # Everything at or below the id of the (KEPT+1)-th newest goes: one range of ix_rejections_source_id;
    # when the source has no more than KEPT the subquery is NULL and nothing is deleted.
    cutoff = (select(table.c.id).where(table.c.source_id == source_id).order_by(table.c.id.desc())
              .offset(REJECTIONS_KEPT).limit(1).scalar_subquery())
    session.execute(delete(table).where(table.c.source_id == source_id, table.c.id <= cutoff))


def latest_rejections(session: Session, *, source_id: str, limit: int = 50) -> list[RejectedMessage]:
    """The source's latest rejections, newest first."""
    if not 1 <= limit <= MAX_REJECTIONS_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_REJECTIONS_PAGE}", field="limit")
    get_source(session, source_id)
    return list(session.scalars(select(RejectedMessage).where(RejectedMessage.source_id == source_id)
                                .order_by(RejectedMessage.id.desc()).limit(limit)))


# --- events -----------------------------------------------------------------------------------------

def _encode_cursor(before: int, floor: int) -> str:
    return encode_cursor("e1", before, floor)


def _decode_cursor(cursor: str) -> tuple[int, int]:
    tag, before, floor = decode_cursor(cursor, 3)
    try:
        if tag != "e1":
            raise ValueError(tag)
        return int(before), int(floor)
    except ValueError:
        raise bad_cursor() from None


def latest_events(session: Session, *, source_id: str, limit: int = 50,
                  cursor: str | None = None) -> tuple[list[Event], str | None]:
    """A page of the source's latest events, newest first by id, and the next page's cursor (None at the
    end of the window).

    ``events`` has no index by source and gets none: it is the hottest insert path, and an index would cost
    ingestion throughput. So only the latest :data:`EVENTS_WINDOW` ids of ``events`` (every source's, and
    domain events) are looked at: a page is a backward range scan of the primary key below the cursor,
    filtered by source, that stops after ``limit`` rows or at the window's floor, whichever comes first.
    The floor is fixed when the first page is read and travels in the cursor, so later pages stay within
    the same window even while new events arrive. A source whose latest event is older than the window
    gets an empty page.
    """
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_EVENTS_PAGE}", field="limit")
    get_source(session, source_id)
    if cursor:
        before, floor = _decode_cursor(cursor)
    else:
        top = session.scalar(select(func.max(Event.id)))  # the primary key's last entry
        if top is None:
            return [], None
        before, floor = top + 1, top - EVENTS_WINDOW
    # coalesce(...) is an expression no index covers, so no plan can take uq_events_source_message and read
    # every event of a big source: the primary key range is the only way in, and it is bounded.
    q = (select(Event)
         .where(Event.id < before, Event.id > floor, func.coalesce(Event.source_id, "") == source_id)
         .order_by(Event.id.desc()).limit(limit + 1))
    rows = list(session.scalars(q))
    next_cursor = _encode_cursor(rows[limit - 1].id, floor) if len(rows) > limit else None
    return rows[:limit], next_cursor
