"""Resolving a batch of messages to profiles: load the graph slice, resolve in memory, write back.

Everything is set-based: a few SELECTs to load the identities and profiles a batch touches, then
bulk INSERTs/UPDATEs. Callers hold the identity lock (see ``tracking.service.ingest``), so the
slice cannot change underneath.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.core.time import utcnow
from omnijourney.core.types import UTCDateTime
from omnijourney.customers.graph import Graph, Profile
from omnijourney.customers.hooks import KNOWN_TYPES, profiles_became_known, profiles_merged
from omnijourney.customers.identifiers import Extractor, Identifier
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.db import bulk_insert, bulk_update, select_pairs
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


def load_graph(session: Session, settings: IdentitySettings, wanted: set[Identifier]) -> Graph:
    """The profiles owning ``wanted`` identifiers, with all their identifiers."""
    graph = Graph(settings, utcnow())
    # one round trip: every identifier of every profile that owns one of ``wanted``
    sql = ("SELECT o.type, o.value, o.customer_id, o.first_seen FROM identities o WHERE o.customer_id IN "
           "(SELECT i.customer_id FROM identities i JOIN p ON i.type = p.a AND i.value = p.b)")
    idents = select_pairs(session, sql, list(wanted))
    table = Customer.__table__
    pending = {r[2] for r in idents}
    while pending:  # profiles, following merged_into pointers (normally none: identities move on merge)
        ids = list(pending)
        pending = set()
        for part in chunks(ids):
            rows = session.execute(select(table.c.id, table.c.created_at, table.c.traits, table.c.trait_meta,
                                          table.c.consent, table.c.merge_count, table.c.merged_into)
                                   .where(table.c.id.in_(part)))
            for cid, created_at, traits, meta, consent, merge_count, merged_into in rows:
                graph.add_profile(Profile(id=cid, created_at=created_at, traits=traits, trait_meta=meta,
                                          consent=consent, merge_count=merge_count, merged_into=merged_into))
                if merged_into and merged_into not in graph.profiles:
                    pending.add(merged_into)
    to_time = UTCDateTime().process_result_value if session.get_bind().dialect.name == "sqlite" else None
    for t, v, cid, first_seen in idents:
        if to_time is not None and isinstance(first_seen, str):
            first_seen = to_time(datetime.fromisoformat(first_seen), None)
        graph.add_identity(t, v, cid, first_seen)
    return graph


def resolve_messages(session: Session, messages: Sequence[Message], per_message: Sequence[list[Identifier]],
                     settings: IdentitySettings) -> list[str | None]:
    """The surviving profile id of each message (None when it carries no usable identifier)."""
    wanted: set[Identifier] = set()
    for idents in per_message:
        for t, v in idents:
            if t == "previous_id":
                wanted.add(("user_id", v))
                wanted.add(("anonymous_id", v))
            else:
                wanted.add((t, v))
    graph = load_graph(session, settings, wanted)
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
    save_graph(session, graph)
    return [graph.survivor_of(c) if c else None for c in resolved]


def _traits_of(m: Message) -> dict[str, Any]:
    ctx_traits = m.context.get("traits") if m.context else None
    traits: dict[str, Any] = dict(ctx_traits) if isinstance(ctx_traits, dict) else {}
    if m.type == "identify" and m.traits:
        traits.update(m.traits)
    return traits


def save_graph(session: Session, graph: Graph) -> None:
    """Write what resolution changed: new and updated profiles, new links, merges."""
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in graph.profiles.values():
        if not p.dirty:
            continue
        row = {"id": p.id, "traits": p.traits, "trait_meta": p.trait_meta, "consent": p.consent,
               "merge_count": p.merge_count, "updated_at": now,
               "merged_into": graph.survivor_of(p.id) if p.merged_into else None}
        if p.new:
            row["created_at"] = p.created_at
            new_rows.append(row)
        else:
            updates.append(row)
    if new_rows:
        bulk_insert(session, Customer.__table__, new_rows)
    bulk_update(session, Customer.__table__, "id", updates)
    if graph.links:
        bulk_insert(session, Identity.__table__, [
            {"type": link.type, "value": link.value, "customer_id": graph.survivor_of(link.customer_id),
             "first_seen": link.first_seen, "source_id": link.source_id}
            for link in graph.links
        ])
    known = {graph.survivor_of(link.customer_id) for link in graph.links if link.type in KNOWN_TYPES}
    if graph.merges:
        session.execute(insert(Merge.__table__), [
            {"survivor_id": m.survivor_id, "merged_id": m.merged_id, "at": m.at, "message_id": m.message_id,
             "source_id": m.source_id, "identifiers": m.identifiers, "reason": m.reason}
            for m in graph.merges
        ])
        stored_losers = [m.merged_id for m in graph.merges if not graph.profiles[m.merged_id].new]
        profiles_merged(session, [(loser, graph.survivor_of(loser)) for loser in stored_losers])
        for loser in stored_losers:
            survivor = graph.survivor_of(loser)
            session.execute(update(Identity).where(Identity.customer_id == loser).values(customer_id=survivor))
            session.execute(update(Event).where(Event.customer_id == loser).values(customer_id=survivor))
            session.execute(update(Customer).where(Customer.merged_into == loser).values(merged_into=survivor))
            known.add(survivor)
    anonymous = {cid: list(graph.profiles[cid].idents.get("anonymous_id", ())) for cid in sorted(known)}
    profiles_became_known(session, {cid: ids for cid, ids in anonymous.items() if ids})
