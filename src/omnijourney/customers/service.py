"""Customer 360: profiles, lookups by any identifier, the timeline, the merge history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.cursors import bad_cursor, decode_cursor, encode_cursor
from omnijourney.core.errors import Invalid, NotFound
from omnijourney.core.time import parse_ts
from omnijourney.customers.identifiers import is_blocked, normalise
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.tracking.models import Event
from omnijourney.tracking.spec import journey_stage

MAX_PAGE = 200


def survivor(session: Session, customer_id: str) -> Customer:
    """The profile for ``customer_id``, following merges to the surviving one."""
    customer = session.get(Customer, customer_id)
    seen = set()
    while customer is not None and customer.merged_into is not None and customer.id not in seen:
        seen.add(customer.id)
        customer = session.get(Customer, customer.merged_into)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}", field="id")
    return customer


@dataclass(slots=True)
class Profile360:
    customer: Customer
    identities: list[Identity]
    channels: dict[str, int]  # channel -> events
    first_seen: datetime | None
    last_seen: datetime | None
    events: int
    merged_from: list[Merge]


def profile(session: Session, *, customer_id: str) -> Profile360:
    """Everything known about a person: traits, identities, consent, channels, first and last seen."""
    customer = survivor(session, customer_id)
    identities = list(session.scalars(
        select(Identity).where(Identity.customer_id == customer.id).order_by(Identity.first_seen, Identity.type)
    ))
    rows = session.execute(
        select(Event.channel, func.count(), func.min(Event.timestamp), func.max(Event.timestamp))
        .where(Event.customer_id == customer.id).group_by(Event.channel)
    ).all()
    firsts = [r[2] for r in rows]
    lasts = [r[3] for r in rows]
    merges = list(session.scalars(select(Merge).where(Merge.survivor_id == customer.id).order_by(Merge.id)))
    return Profile360(
        customer=customer, identities=identities, channels={r[0]: r[1] for r in rows},
        first_seen=min(firsts) if firsts else None, last_seen=max(lasts) if lasts else None,
        events=sum(r[1] for r in rows), merged_from=merges,
    )


def find(session: Session, *, id_type: str, value: str, settings: IdentitySettings) -> list[Customer]:
    """Profiles owning an identifier (normalised as at ingestion: emails lower-cased, phones E.164)."""
    ident = normalise(id_type, value, settings.default_region)
    if ident is None:
        raise Invalid(f"{value!r} is not a usable {id_type}", field=id_type)
    if is_blocked(ident[1], frozenset(v.lower() for v in settings.blocked_values)):
        return []
    candidates = [ident]
    if ident[0] == "phone":
        candidates.append(("whatsapp", ident[1]))  # a phone number is also how WhatsApp knows them
    owners = session.scalars(
        select(Identity.customer_id).where(or_(*(and_(Identity.type == t, Identity.value == v)
                                                  for t, v in candidates)))
    ).all()
    result: dict[str, Customer] = {}
    for cid in owners:
        c = survivor(session, cid)
        result[c.id] = c
    return list(result.values())


def _encode_cursor(ts: datetime, event_id: int) -> str:
    return encode_cursor(ts.isoformat(), event_id)


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    ts, event_id = decode_cursor(cursor, 2)
    parsed = parse_ts(ts)
    if parsed is None or not event_id.isdigit():
        raise bad_cursor()
    return parsed, int(event_id)


def timeline(session: Session, *, customer_id: str, limit: int = 50, cursor: str | None = None,
             channel: str | None = None, type: str | None = None, event: str | None = None,
             ) -> tuple[Customer, list[Event], str | None]:
    """A page of the person's events from every channel, newest first, and the next page's cursor."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    customer = survivor(session, customer_id)
    q = select(Event).where(Event.customer_id == customer.id)
    if channel:
        q = q.where(Event.channel == channel)
    if type:
        q = q.where(Event.type == type)
    if event:
        q = q.where(Event.event == event)
    if cursor:
        ts, event_id = _decode_cursor(cursor)
        q = q.where(or_(Event.timestamp < ts, and_(Event.timestamp == ts, Event.id < event_id)))
    rows = list(session.scalars(q.order_by(Event.timestamp.desc(), Event.id.desc()).limit(limit + 1)))
    next_cursor = _encode_cursor(rows[limit - 1].timestamp, rows[limit - 1].id) if len(rows) > limit else None
    return customer, rows[:limit], next_cursor


def event_dict(e: Event) -> dict[str, Any]:
    return {
        "id": e.id, "message_id": e.message_id, "type": e.type, "event": e.event, "channel": e.channel,
        "store": e.store_code, "timestamp": e.timestamp, "received_at": e.received_at,
        "properties": e.properties, "traits": e.traits, "user_id": e.user_id, "anonymous_id": e.anonymous_id,
        "previous_id": e.previous_id, "group_id": e.group_id, "stage": journey_stage(e.event) if e.event else None,
    }
