"""Resolving a batch of messages to profiles: load the graph slice, resolve in memory, write back.

Everything is set-based: a few SELECTs to load the identities and profiles a batch touches, then
COPY/bulk writes. Callers hold the identity lock (see ``tracking.service.ingest``), so the slice
cannot change underneath.

The steps are separate so that a bulk import can overlap them: :func:`fetch_graph` and
:func:`save_changes` only talk to the database, :func:`absorb`, :func:`resolve_in` and
:func:`take_changes` only compute (``take_changes`` encodes a snapshot, so the graph may go on
changing while the snapshot is written).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.time import utcnow
from omnijourney.core.types import UTCDateTime
from omnijourney.customers.graph import Graph, Profile
from omnijourney.customers.hooks import KNOWN_TYPES, profiles_became_known, profiles_merged
from omnijourney.customers.identifiers import Extractor, Identifier
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.db import EncodedRows, encode, insert_encoded, remap, select_pairs, update_encoded
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event

T = TypeVar("T")
_CHUNK = 2000
_extractors: dict[int, Extractor] = {}


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def extractor_for(settings: IdentitySettings) -> Extractor:
    ex = _extractors.get(id(settings))
    if ex is None or ex.settings is not settings:
        ex = _extractors[id(settings)] = Extractor(settings, settings.default_region)
    return ex


def message_identifiers(ex: Extractor, m: Message) -> list[Identifier]:
    return ex.extract(user_id=m.user_id, anonymous_id=m.anonymous_id, previous_id=m.previous_id,
                      traits=m.traits if m.type == "identify" else None, context=m.context)


def wanted_identifiers(per_message: Iterable[list[Identifier]]) -> set[Identifier]:
    """Every identifier the messages name (an alias's previousId may be a user id or an anonymous id)."""
    wanted: set[Identifier] = set()
    for idents in per_message:
        for t, v in idents:
            if t == "previous_id":
                wanted.add(("user_id", v))
                wanted.add(("anonymous_id", v))
            else:
                wanted.add((t, v))
    return wanted


@dataclass(slots=True)
class GraphRows:
    """What the database holds about some identifiers: every identity and row of the profiles owning them."""

    wanted: set[Identifier]
    identities: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)


def fetch_graph(session: Session, wanted: set[Identifier]) -> GraphRows:
    """Read the profiles owning ``wanted`` identifiers, with all their identifiers (database only)."""
    out = GraphRows(wanted)
    if not wanted:
        return out
    # one round trip: every identifier of every profile that owns one of ``wanted``
    sql = ("SELECT o.type, o.value, o.customer_id, o.first_seen FROM identities o WHERE o.customer_id IN "
           "(SELECT i.customer_id FROM identities i JOIN p ON i.type = p.a AND i.value = p.b)")
    idents = select_pairs(session, sql, list(wanted))
    table = Customer.__table__
    seen: set[str] = set()
    pending = {r[2] for r in idents}
    while pending:  # profiles, following merged_into pointers (normally none: identities move on merge)
        ids = list(pending)
        seen.update(ids)
        pending = set()
        for part in chunks(ids):
            rows = session.execute(select(table.c.id, table.c.created_at, table.c.traits, table.c.trait_meta,
                                          table.c.consent, table.c.merge_count, table.c.merged_into)
                                   .where(table.c.id.in_(part)))
            for cid, created_at, traits, meta, consent, merge_count, merged_into in rows:
                out.profiles.append(Profile(id=cid, created_at=created_at, traits=traits, trait_meta=meta,
                                            consent=consent, merge_count=merge_count, merged_into=merged_into))
                if merged_into and merged_into not in seen:
                    pending.add(merged_into)
    to_time = UTCDateTime().process_result_value if session.get_bind().dialect.name == "sqlite" else None
    for t, v, cid, first_seen in idents:
        if to_time is not None and isinstance(first_seen, str):
            first_seen = to_time(datetime.fromisoformat(first_seen), None)
        out.identities.append((t, v, cid, first_seen))
    return out


def absorb(graph: Graph, rows: GraphRows) -> None:
    """Add what :func:`fetch_graph` read. Profiles the graph already holds keep the graph's state: it is
    newer than the database's while a long-lived graph's changes are still being written."""
    added = {p.id for p in rows.profiles if graph.add_profile(p)}
    for t, v, cid, first_seen in rows.identities:
        if cid in added:
            graph.add_identity(t, v, cid, first_seen)
    graph.looked_up |= rows.wanted


def load_graph(session: Session, settings: IdentitySettings, wanted: set[Identifier]) -> Graph:
    """A graph of the profiles owning ``wanted`` identifiers, with all their identifiers."""
    graph = Graph(settings, utcnow())
    absorb(graph, fetch_graph(session, wanted))
    return graph


def resolve_in(graph: Graph, messages: Sequence[Message], per_message: Sequence[list[Identifier]]) -> list[str | None]:
    """Resolve messages in memory, in order: the surviving profile id of each (None without identifiers)."""
    resolved: list[str | None] = []
    for m, idents in zip(messages, per_message, strict=True):
        cid = graph.resolve(idents, at=m.timestamp, message_id=m.message_id, source_id=m.source_id)
        resolved.append(cid)
        if cid is None:
            continue
        traits = _traits_of(m)
        if traits:
            graph.apply_traits(cid, traits, m.timestamp)
        prefs = (m.context.get("consent") or {}).get("categoryPreferences") if m.context else None
        if isinstance(prefs, dict) and prefs:
            graph.apply_consent(cid, prefs, m.timestamp, source=m.source_name, channel=m.channel)
    return [graph.survivor_of(c) if c else None for c in resolved]


def resolve_messages(session: Session, messages: Sequence[Message], per_message: Sequence[list[Identifier]],
                     settings: IdentitySettings) -> list[str | None]:
    """The surviving profile id of each message (None when it carries no usable identifier)."""
    graph = load_graph(session, settings, wanted_identifiers(per_message))
    resolved = resolve_in(graph, messages, per_message)
    save_changes(session, take_changes(graph, session.get_bind().dialect.name))
    return resolved


def _traits_of(m: Message) -> dict[str, Any]:
    ctx_traits = m.context.get("traits") if m.context else None
    traits: dict[str, Any] = dict(ctx_traits) if isinstance(ctx_traits, dict) else {}
    if m.type == "identify" and m.traits:
        traits.update(m.traits)
    return traits


@dataclass(slots=True)
class Changes:
    """What resolution changed, encoded: a snapshot that stays valid while the graph changes on."""

    new_profiles: EncodedRows | None
    updated_profiles: EncodedRows | None
    links: EncodedRows | None
    merges: list[dict[str, Any]]
    moved: list[tuple[str, str]]  # (merged profile, survivor) for profiles already stored
    known: dict[str, list[str]]  # profile -> its anonymous ids, for profiles that just became known


def take_changes(graph: Graph, dialect: str) -> Changes:
    """Encode what changed since the last call and mark it written."""
    now = utcnow()
    survivor_of = graph.survivor_of
    new_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in graph.changed.values():
        row = {"id": p.id, "traits": p.traits, "trait_meta": p.trait_meta, "consent": p.consent,
               "merge_count": p.merge_count, "updated_at": now,
               "merged_into": survivor_of(p.id) if p.merged_into else None}
        if p.new:
            row["created_at"] = p.created_at
            new_rows.append(row)
        else:
            updates.append(row)
        p.new = p.dirty = False
    table = Customer.__table__
    changes = Changes(
        new_profiles=encode(table, new_rows, dialect) if new_rows else None,
        updated_profiles=encode(table, updates, dialect) if updates else None,
        links=encode(Identity.__table__, [
            {"type": link.type, "value": link.value, "customer_id": survivor_of(link.customer_id),
             "first_seen": link.first_seen, "source_id": link.source_id}
            for link in graph.links
        ], dialect) if graph.links else None,
        merges=[{"survivor_id": m.survivor_id, "merged_id": m.merged_id, "at": m.at, "message_id": m.message_id,
                 "source_id": m.source_id, "identifiers": m.identifiers, "reason": m.reason}
                for m in graph.merges],
        moved=[],
        known={},
    )
    stored = {m.merged_id for m in graph.merges} - {r["id"] for r in new_rows}
    changes.moved = [(loser, survivor_of(loser)) for loser in sorted(stored)]
    known = {survivor_of(link.customer_id) for link in graph.links if link.type in KNOWN_TYPES}
    known.update(s for _, s in changes.moved)
    for cid in sorted(known):
        anonymous = graph.profiles[cid].idents.get("anonymous_id")
        if anonymous:
            changes.known[cid] = list(anonymous)
    graph.changed = {}
    graph.links = []
    graph.merges = []
    return changes


def save_changes(session: Session, changes: Changes) -> None:
    """Write a snapshot of :func:`take_changes`: profiles, links, merges, and what other domains do about them."""
    if changes.new_profiles:
        insert_encoded(session, changes.new_profiles)
    if changes.updated_profiles:
        update_encoded(session, changes.updated_profiles, "id")
    if changes.links:
        insert_encoded(session, changes.links)
    if changes.merges:
        session.execute(insert(Merge.__table__), changes.merges)
    if changes.moved:
        profiles_merged(session, changes.moved)
        # a merged profile's identities, events and earlier merged profiles now belong to the survivor
        moved = dict(changes.moved)
        remap(session, Identity.__table__, "customer_id", moved)
        remap(session, Event.__table__, "customer_id", moved)
        remap(session, Customer.__table__, "merged_into", moved)
    profiles_became_known(session, changes.known)
