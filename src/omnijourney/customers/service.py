"""Customer 360: profiles, lookups by any identifier, the timeline, the merge history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers
from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, text, union
from sqlalchemy.orm import Session, aliased

from omnijourney.catalog.models import Channel
from omnijourney.config import IdentitySettings
from omnijourney.core.channels import CHANNELS
from omnijourney.core.cursors import bad_cursor, decode_cursor, encode_cursor
from omnijourney.core.errors import Invalid, NotFound
from omnijourney.core.time import parse_ts
from omnijourney.customers.identifiers import is_blocked, normalise
from omnijourney.customers.models import NAME_TRAITS, Customer, Identity, Merge, NameKey, name_present
from omnijourney.tracking.messages import MESSAGE_TYPES
from omnijourney.tracking.models import Event
from omnijourney.tracking.spec import journey_stage

MAX_PAGE = 200
# Shortest prefixes searched: a shorter one would match a large part of the customers, each read to be sorted
MIN_NAME_PREFIX = 2
MIN_EMAIL_PREFIX = 3
MIN_PHONE_DIGITS = 4  # after the "+"
# Above every character a name or identifier continues with, in code point order and in the linguistic orders of
# glibc and ICU alike (a noncharacter, sorted last): [p, p + _TOP) is every text that starts with p
_TOP = "\U0010FFFF"


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


# --- the customer list ---------------------------------------------------------------------------------

def _like_prefix(prefix: str) -> str:
    """A LIKE pattern for "starts with ``prefix``" (escape character ``\\``)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _starts_with(key: ColumnElement[str], prefix: str, *, lower: bool = False) -> ColumnElement[bool]:
    """``key`` starts with ``prefix`` (lower-cased by the database first, as the name indexes are, with ``lower``):
    one range of an index on ``key`` whatever the collation, since the upper bound sorts after every continuation;
    then an exact check of the few rows a linguistic collation lets into the range besides."""
    lo: ColumnElement[str] = literal(prefix)
    pattern: ColumnElement[str] = literal(_like_prefix(prefix))
    if lower:
        lo, pattern = func.lower(lo), func.lower(pattern)
    return and_(key >= lo, key < lo.concat(_TOP), key.like(pattern, escape="\\"))


def phone_prefix(value: str, region: str) -> str | None:
    """The E.164 prefix (``+`` and digits) that a partly typed phone number stands for, or None when it has too
    few digits: ``+44 20 7``, ``0044 207``, and national forms in ``region`` (``(415) 55`` in US, ``020 7`` in GB:
    country code added, trunk prefix dropped)."""
    digits = "".join(ch for ch in value if ch.isdigit())
    raw = value.strip()
    if raw.startswith("+"):
        e164 = digits
    elif raw.startswith("00"):
        e164 = digits[2:]
    else:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        trunk = meta.national_prefix if meta is not None else None
        if trunk and digits.startswith(trunk):
            digits = digits[len(trunk):]
        e164 = f"{phonenumbers.country_code_for_region(region)}{digits}"
    return f"+{e164}" if len(e164) >= MIN_PHONE_DIGITS and len(digits) > 0 else None


@dataclass(frozen=True, slots=True)
class CustomerSearch:
    """What the list is narrowed to: at most one of these (none: every customer)."""

    name: str | None = None  # prefix of first_name, last_name or name, any case; "ann sm": first name + last name
    email_prefix: str | None = None
    phone_prefix: str | None = None  # phones and WhatsApp numbers


def _keyset(session: Session, cursor: str | None) -> ColumnElement[bool]:
    """Not merged away, and after the cursor's customer in the list's order. On SQLite the first test is marked true
    of most profiles (which it is), or SQLite's planner, without statistics, would read every listed profile through
    ``ix_customers_merged_into`` and sort them, instead of walking ``ix_customers_newest`` or probing candidates."""
    listed = Customer.merged_into.is_(None)
    if session.get_bind().dialect.name == "sqlite":
        listed = func.likely(listed)
    if not cursor:
        return listed
    created_at, customer_id = _decode_list_cursor(cursor)
    return and_(listed, or_(Customer.created_at < created_at,
                            and_(Customer.created_at == created_at, Customer.id < customer_id)))


def _encode_list_cursor(c: Customer) -> str:
    return encode_cursor("c1", c.created_at.isoformat(), c.id)


def _decode_list_cursor(cursor: str) -> tuple[datetime, str]:
    tag, created_at, customer_id = decode_cursor(cursor, 3)
    parsed = parse_ts(created_at)
    if tag != "c1" or parsed is None or not customer_id:
        raise bad_cursor()
    return parsed, customer_id


def _by_name(session: Session, prefix: str) -> Select[tuple[str]]:
    """Ids of the profiles whose first name, last name or name starts with ``prefix`` in any case (and, for two words
    or more, of those whose first name starts with the first and last name with the rest): a range of each index."""
    dialect = session.get_bind().dialect.name

    def trait(name: str, value: str) -> Select[tuple[str]]:
        # the partial index's own condition, written as there, so that every engine sees that the index applies
        return select(Customer.id).where(text(name_present(name, dialect)),
                                         _starts_with(NameKey(name), value, lower=True))

    either = [trait(name, prefix) for name in NAME_TRAITS]
    first, _, rest = prefix.partition(" ")
    if rest:
        either.append(trait("last_name", rest).where(
            NameKey("first_name").like(func.lower(literal(_like_prefix(first))), escape="\\")))
    return union(*either)  # type: ignore[return-value]


def _by_identity(types: tuple[str, ...], prefix: str) -> Select[tuple[str]]:
    """Ids of the profiles owning an identifier of ``types`` that starts with ``prefix``: ranges of the identities'
    primary key (a merge re-points identities to the survivor)."""
    return select(Identity.customer_id).where(Identity.type.in_(types), _starts_with(Identity.value, prefix))


def _among(session: Session, candidates: Select[tuple[str]], cursor: str | None,
           limit: int) -> Select[tuple[Customer]]:
    """The newest ``limit`` + 1 of the listed ``candidates``. PostgreSQL reads every candidate by primary key
    (``= ANY(ARRAY(...))``, behind ``OFFSET 0``) before it sorts them, whatever the statistics say: a join could scan
    all customers, and a walk down ``ix_customers_newest`` in the wanted order, taking the candidates as they come,
    reads most of the profiles when the candidates are old."""
    if session.get_bind().dialect.name != "postgresql":
        return (select(Customer).where(Customer.id.in_(candidates), _keyset(session, cursor))
                .order_by(Customer.created_at.desc(), Customer.id.desc()).limit(limit + 1))
    probed = (select(Customer).where(Customer.id == func.any(func.array(candidates.scalar_subquery())),
                                     _keyset(session, cursor)).offset(0).subquery())
    found = aliased(Customer, probed)
    return select(found).order_by(found.created_at.desc(), found.id.desc()).limit(limit + 1)


def search(session: Session, *, query: CustomerSearch, settings: IdentitySettings, limit: int = 50,
           cursor: str | None = None) -> tuple[list[Customer], str | None]:
    """A page of customers, newest first (merged profiles never listed), narrowed by ``query``, and the next page's
    cursor (None on the last page).

    Every search is a few index ranges (names: expression indexes; emails and phones: the identities' primary key)
    and the whole list a range of ``ix_customers_newest``; the matches of a prefix are sorted by age, so prefixes
    have a minimum length (``MIN_*``) that keeps them to a small part of the customers."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    candidates: Select[tuple[str]] | None = None
    if query.name is not None:
        name = " ".join(query.name.split())
        if len(name) < MIN_NAME_PREFIX:
            raise Invalid(f"name: give at least {MIN_NAME_PREFIX} characters", field="name")
        candidates = _by_name(session, name)
    elif query.email_prefix is not None:
        email = query.email_prefix.strip().lower()
        if len(email) < MIN_EMAIL_PREFIX:
            raise Invalid(f"email_prefix: give at least {MIN_EMAIL_PREFIX} characters", field="email_prefix")
        candidates = _by_identity(("email",), email)
    elif query.phone_prefix is not None:
        phone = phone_prefix(query.phone_prefix, settings.default_region)
        if phone is None:
            raise Invalid(f"phone_prefix: give at least {MIN_PHONE_DIGITS} digits of the number, with its country "
                          f"code (+44 20 7...) or as dialled in {settings.default_region}", field="phone_prefix")
        candidates = _by_identity(("phone", "whatsapp"), phone)
    if candidates is None:  # the whole list: a backward range of ix_customers_newest
        q = (select(Customer).where(_keyset(session, cursor))
             .order_by(Customer.created_at.desc(), Customer.id.desc()).limit(limit + 1))
    else:
        q = _among(session, candidates, cursor, limit)
    rows = list(session.scalars(q))
    next_cursor = _encode_list_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _encode_cursor(ts: datetime, event_id: int) -> str:
    return encode_cursor(ts.isoformat(), event_id)


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    ts, event_id = decode_cursor(cursor, 2)
    parsed = parse_ts(ts)
    if parsed is None or not event_id.isdigit():
        raise bad_cursor()
    return parsed, int(event_id)


_LISTED_CODES = 50  # an unknown channel code's error lists at most this many of the known ones


def catalog_channel(session: Session, code: str, *, field: str = "channel_code") -> Channel:
    """The catalog channel ``code`` (``web``, ``S01``...), or a 422 naming ``field`` that lists the known codes."""
    channel = session.get(Channel, code)
    if channel is None:
        codes = list(session.scalars(select(Channel.code).order_by(Channel.code).limit(_LISTED_CODES + 1)))
        known = ", ".join(codes[:_LISTED_CODES]) + (", ..." if len(codes) > _LISTED_CODES else "")
        raise Invalid(f"{field}: no catalog channel {code!r}; the channel codes are: {known or 'none yet'} "
                      f"(a kind of channel such as web or store goes in channel)", field=field)
    return channel


def timeline(session: Session, *, customer_id: str, limit: int = 50, cursor: str | None = None,
             channel: str | None = None, channel_code: str | None = None, type: str | None = None,
             event: str | None = None) -> tuple[Customer, list[Event], str | None]:
    """A page of the person's events from every channel, newest first, and the next page's cursor.

    ``channel`` is a kind of channel (``core.channels``: web, store, call_center...); ``channel_code`` a channel
    of the catalog (``web``, ``S01``...): a store's events are those of its kind and store code, another channel's
    those of its kind (events carry no other code). Unknown values of either, or of ``type``, answer 422."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    if channel is not None and channel not in CHANNELS:
        raise Invalid(f"channel: unknown kind of channel {channel!r}; one of {', '.join(sorted(CHANNELS))} "
                      f"(a catalog channel code such as S01 goes in channel_code)", field="channel")
    if type is not None and type not in MESSAGE_TYPES:
        raise Invalid(f"type: unknown {type!r}; one of {', '.join(MESSAGE_TYPES)}", field="type")
    coded = catalog_channel(session, channel_code) if channel_code is not None else None
    customer = survivor(session, customer_id)
    q = select(Event).where(Event.customer_id == customer.id)
    if channel is not None:
        q = q.where(Event.channel == channel)
    if coded is not None:
        q = q.where(Event.channel == coded.type)
        if coded.type == "store":
            q = q.where(Event.store_code == coded.code)
    if type is not None:
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
